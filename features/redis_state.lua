#!lua name=riskscore_state_2
--[[
riskscore's online feature state in Redis: the same window arithmetic as the in-process
kernels (features/window_kernels.py), one entity per hash key, updated atomically.

Loaded with FUNCTION LOAD REPLACE (functions survive a restart, unlike EVAL scripts) and
called with FCALL. The library and its functions carry a version (_2: the replay record
changed the arguments), so processes of the version before, calling theirs, can run on
the same Redis during an upgrade instead of replacing each other's library. Generic over the feature plan: the windows of each key come with every
call as arguments, never written here by hand.

One hash per entity:
  m         doubles [next seq, head seq, latest event ms,
                     then per window: lo, hi, count, amount sum, sum of squares, frauds]
  e<seq>    doubles [event ms, amount, label] then the transaction id (retained events)
  i<txid>   that transaction's replay record (duplicate check, labels, re-delivery):
            double [seq of its event], its payload digest (16 bytes), then the doubles
            its call returned for the features: per window count, amount sum, sum of
            squares, frauds, then the gap. (Written by an older version: the seq alone,
            as decimal text, and no replay.)

A re-delivered payment with the digest it was applied with gets its replay record back
(the features it was first given, bit for bit) and changes nothing: a process killed after
this call and before the payment's decision was recorded leaves a payment the next one
can still decide, exactly as it would have been. A different digest is refused.

Work per call is amortised O(windows): each window keeps its running statistics and two
cursors (lo, hi) that only move forward, so an event is read once when it enters a window
and once when it leaves; events no window can see again are deleted with their ids.

Numbers are stored and returned as raw little-endian doubles (struct.pack '<d'): every
bit of the running sums reaches the caller, which computes the feature values with the
same compiled code as the in-process engine. (Redis would turn a Lua number in a reply
into an integer, and tostring keeps 14 digits; msgpack was measured 2x slower here.) Lua numbers are IEEE doubles and the additions run in the same order
as the kernels', so the sums are the same to the last bit.
]]

local NEVER = -4611686018427387904 -- -(2^62): "no event yet", as in the kernels
local EVENT = '<ddd'
local EVENT_BYTES = 24
-- struct is reachable only while a function runs, not while the library loads.
local formats = {}
local function doubles(count)
    local f = formats[count]
    if not f then
        f = '<' .. string.rep('d', count)
        formats[count] = f
    end
    return f
end

-- A table of ``count`` numbers from its packed form (struct.unpack also returns the
-- position after the data: dropped).
local function unpack_doubles(raw, count)
    local t = { struct.unpack(doubles(count), raw) }
    t[count + 1] = nil
    return t
end

local function pack_doubles(t, count)
    return struct.pack(doubles(count), unpack(t, 1, count))
end

local function read_event(raw)
    local t, amount, label = struct.unpack(EVENT, raw)
    return { t, amount, label, string.sub(raw, EVENT_BYTES + 1) }
end

local function write_event(e)
    return struct.pack(EVENT, e[1], e[2], e[3]) .. e[4]
end

-- Each key's windows come as one argument, "window,delay,labels;..." (ms, ms, 0/1),
-- parsed once per distinct plan and kept: parsing on every call cost more than the update.
local parsed_windows = {}
local function read_windows(text)
    local windows = parsed_windows[text]
    if windows then
        return windows
    end
    windows = {}
    for w, d, l in string.gmatch(text, '(%d+),(%d+),([01])') do
        windows[#windows + 1] = { tonumber(w), tonumber(d), l == '1' }
    end
    parsed_windows[text] = windows
    return windows
end

local function meta_size(n)
    return 3 + 6 * n
end

local function new_meta(n)
    local m = { 0, 0, NEVER }
    for i = 4, meta_size(n) do
        m[i] = 0
    end
    return m
end

local function load_meta(raw, n)
    if raw then
        return unpack_doubles(raw, meta_size(n))
    end
    return new_meta(n)
end

-- Statistics of window s live at m[b .. b+5], b = 4 + 6 (s - 1): lo, hi, n, sum, sq, frauds.
local function add(m, b, amount, label)
    m[b + 2] = m[b + 2] + 1
    m[b + 3] = m[b + 3] + amount
    m[b + 4] = m[b + 4] + amount * amount
    if label then
        m[b + 5] = m[b + 5] + label
    end
end

local function remove(m, b, amount, label)
    m[b + 2] = m[b + 2] - 1
    m[b + 3] = m[b + 3] - amount
    m[b + 4] = m[b + 4] - amount * amount
    if label then
        m[b + 5] = m[b + 5] - label
    end
    if m[b + 2] == 0 then
        -- An empty window has exactly zero sums: drop the rounding the removals left.
        m[b + 3], m[b + 4], m[b + 5] = 0, 0, 0
    end
end

-- Append the event and move every window to its time; returns the gap since the
-- entity's previous event and the hash fields to write. Mirrors window_kernels._advance.
local function advance(key, m, windows, t, amount, tid)
    local last = m[3]
    -- Per-entity monotone time: a late event counts at its entity's latest time.
    if last > t then
        t = last
    end
    local seq = m[1]
    m[1] = seq + 1
    m[3] = t
    local cache = {}
    local function event(q)
        local e = cache[q]
        if not e then
            e = read_event(redis.call('HGET', key, 'e' .. q))
            cache[q] = e
        end
        return e
    end
    local keep = seq
    for s = 1, #windows do
        local window, delay, labelled = windows[s][1], windows[s][2], windows[s][3]
        local b = 4 + 6 * (s - 1)
        if delay == 0 then
            m[b + 1] = seq + 1
            add(m, b, amount, nil)
        else
            local upper = t - delay
            local hi = m[b + 1]
            while hi < seq do
                local e = event(hi)
                if e[1] > upper then
                    break
                end
                add(m, b, e[2], labelled and e[3] or nil)
                hi = hi + 1
            end
            m[b + 1] = hi
        end
        local lower = t - delay - window
        local lo = m[b]
        -- The new event (seq) is not stored yet: its own time is never <= lower.
        while lo < m[b + 1] and lo < seq do
            local e = event(lo)
            if e[1] > lower then
                break
            end
            remove(m, b, e[2], labelled and e[3] or nil)
            lo = lo + 1
        end
        m[b] = lo
        if lo < keep then
            keep = lo
        end
    end
    -- Events before every window's start can never be seen again: delete them and their ids.
    if keep > m[2] then
        local gone = {}
        for q = m[2], keep - 1 do
            gone[#gone + 1] = 'e' .. q
            gone[#gone + 1] = 'i' .. event(q)[4]
        end
        redis.call('HDEL', key, unpack(gone))
    end
    m[2] = keep
    return t - last, 'e' .. seq, write_event({ t, amount, 0, tid })
end

local DIGEST_BYTES = 16
-- Stored when none was given: never replayed. (A literal: the string library, like struct,
-- is reachable only while a function runs.)
local NO_DIGEST = '\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0'
local OLD_RECORD_BYTES = 8 + DIGEST_BYTES -- shorter: an older version's decimal seq

-- The replay record of a payment just applied: its seq, digest, and what the features read.
local function replay_record(m, n, seq, digest, gap)
    local stats = {}
    for s = 1, n do
        local b = 4 + 6 * (s - 1)
        for j = 2, 5 do
            stats[#stats + 1] = m[b + j]
        end
    end
    stats[#stats + 1] = gap
    if digest == '' then
        digest = NO_DIGEST
    end
    return struct.pack('<d', seq) .. digest .. pack_doubles(stats, 4 * n + 1)
end

-- The seq of a payment's event from its replay record (either form).
local function record_seq(raw)
    if #raw < OLD_RECORD_BYTES then
        return tonumber(raw)
    end
    return (struct.unpack('<d', raw))
end

-- A reply as rs_update gives it, from a replay record: the features' statistics as they
-- were (cursors and times, which no feature reads, as zero), flag 2, the gap as it was.
-- Nil if the record cannot replay ``digest`` (none given, an older record, another payload).
local function replayed_reply(raw, n, digest)
    if digest == '' or #raw < OLD_RECORD_BYTES or string.sub(raw, 9, 8 + DIGEST_BYTES) ~= digest then
        return nil
    end
    local stats = unpack_doubles(string.sub(raw, OLD_RECORD_BYTES + 1), 4 * n + 1)
    local m = { 0, 0, 0 }
    for s = 1, n do
        local b = 4 + 6 * (s - 1)
        m[b], m[b + 1] = 0, 0
        for j = 2, 5 do
            m[b + j] = stats[4 * (s - 1) + j - 1]
        end
    end
    return pack_doubles(m, meta_size(n)) .. struct.pack('<dd', 2, stats[4 * n + 1])
end

--[[
rs_update: apply one payment to the entities named by KEYS (all of one hash tag).
ARGV: transaction id, event ms, amount, payload digest (16 bytes, or empty: none), key
TTL ms, then each key's windows ("window,delay,labels;..." in ms, one argument per key).
Returns, per key, its state as stored (packed doubles: next, head, latest, then per window
lo, hi, count, sum, sq, frauds) followed by two doubles: a flag and the gap since the
entity's previous event (ms). Returning the stored form saves packing a second one. A key
that already holds the transaction id is left as it is (a re-delivered payment changes
nothing): flag 2 (replayed) with the statistics of the first call when the digest is the
one it was applied with, else flag 1 (refused) with the state as it is.
]]
local function rs_update(keys, argv)
    local tid = argv[1]
    local t = tonumber(argv[2])
    local amount = tonumber(argv[3])
    local digest = argv[4]
    if digest ~= '' and #digest ~= DIGEST_BYTES then
        return redis.error_reply('rs_update: the payload digest must be 16 bytes or empty')
    end
    local ttl = argv[5]
    local reply = {}
    for k = 1, #keys do
        local key = keys[k]
        local windows = read_windows(argv[5 + k])
        local n = #windows
        local size = meta_size(n)
        local found = redis.call('HMGET', key, 'm', 'i' .. tid)
        local m = load_meta(found[1], n)
        if found[2] then
            reply[k] = replayed_reply(found[2], n, digest)
                or ((found[1] or pack_doubles(m, size)) .. struct.pack('<dd', 1, 0))
        else
            local gap, field, event = advance(key, m, windows, t, amount, tid)
            local packed = pack_doubles(m, size)
            local record = replay_record(m, n, m[1] - 1, digest, gap)
            redis.call('HSET', key, 'm', packed, field, event, 'i' .. tid, record)
            redis.call('PEXPIRE', key, ttl)
            reply[k] = packed .. struct.pack('<dd', 0, gap)
        end
    end
    return table.concat(reply)
end

--[[
rs_label: record a payment's fraud label in the entities named by KEYS.
ARGV: transaction id, label (0 or 1), then each key's windows (as rs_update's).
Returns 1 if statistics changed, 0 if the same label was known, -1 if the payment is not
held (never seen, or too old for any window). Mirrors window_kernels.apply_label.
]]
local function rs_label(keys, argv)
    local tid = argv[1]
    local value = tonumber(argv[2])
    local best = -1
    for k = 1, #keys do
        local key = keys[k]
        local windows = read_windows(argv[2 + k])
        local record = redis.call('HGET', key, 'i' .. tid)
        local seq = record and record_seq(record)
        local raw = seq and redis.call('HGET', key, 'e' .. seq)
        if raw then
            local e = read_event(raw)
            local delta = value - e[3]
            if delta == 0 then
                if best < 0 then
                    best = 0
                end
            else
                e[3] = value
                local n = #windows
                local m = load_meta(redis.call('HGET', key, 'm'), n)
                for s = 1, n do
                    local b = 4 + 6 * (s - 1)
                    if windows[s][3] and m[b] <= seq and seq < m[b + 1] then
                        m[b + 5] = m[b + 5] + delta
                    end
                end
                redis.call('HSET', key, 'm', pack_doubles(m, meta_size(n)), 'e' .. seq, write_event(e))
                best = 1
            end
        end
    end
    return best
end

redis.register_function('rs_update_2', rs_update)
redis.register_function('rs_label_2', rs_label)
