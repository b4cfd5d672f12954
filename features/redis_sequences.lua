--[[
The second stage's per-customer sequences in Redis, in the library of redis_state.lua
(loaded with it as one library, so one FUNCTION LOAD brings back both).

One list per customer, under the customer's hash tag ({c:<id>}), oldest payment first,
capped at the sequence length. Each item is opaque to Lua: the payment's event time,
amount and feature vector as raw little-endian doubles (every bit kept), then its
transaction id after a fixed-size prefix that the caller names.

rs_seq_append KEYS[1]=list  ARGV: transaction id, item, length, ttl ms, prefix bytes, want
  Appends the item unless the list already holds the id (a retry racing its original,
  or a re-delivery of a payment whose decision was never recorded), trims to the length,
  renews the expiry; answers the list after the append when want is '1' (the second
  stage's view), else 1 if appended and 0 if already there. For an id already held the
  view ends at its item, as its first append answered: the customer's later payments
  are not in it (the items trimmed since, beyond the length, are lost to it).
  Work per call is O(length): the list never holds more than the sequence length.
]]

local function rs_seq_append(keys, args)
  local key, tid, item = keys[1], args[1], args[2]
  local length, ttl, prefix, want = tonumber(args[3]), args[4], tonumber(args[5]), args[6]
  local items = redis.call('LRANGE', key, 0, -1)
  local held = false
  for i = 1, #items do
    if string.sub(items[i], prefix + 1) == tid then
      held = i
      break
    end
  end
  if not held then
    redis.call('RPUSH', key, item)
    if #items + 1 > length then
      redis.call('LTRIM', key, -length, -1)
    end
  end
  redis.call('PEXPIRE', key, ttl)
  if want == '1' then
    if held then
      return { unpack(items, 1, held) }
    end
    items[#items + 1] = item
    local first = math.max(1, #items - length + 1)
    local kept = {}
    for i = first, #items do
      kept[#kept + 1] = items[i]
    end
    return kept
  end
  return held and 0 or 1
end

redis.register_function('rs_seq_append_2', rs_seq_append)
