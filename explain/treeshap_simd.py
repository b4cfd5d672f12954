"""Four-lane float64 vectors for the compiled TreeSHAP kernels.

numba leaves LLVM's SLP vectoriser off and its loop vectoriser guards every short loop with
run-time alias checks (about a hundred instructions per loop entry, more than the loop
itself when it runs over 4-12 quadrature points). These intrinsics emit the vector loads,
stores and arithmetic directly, so each block of four quadrature points is a handful of
AVX instructions with no checks (on machines without AVX, LLVM splits them into SSE).

A vector is a numba ``UniTuple(float64, 4)``; the conversions to and from LLVM's vector type
cancel out once inlined. Arithmetic is IEEE, lane by lane: no reassociation, no fusing
unless :func:`fma4` is called.
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

V4 = types.UniTuple(types.float64, 4)
_VEC = ir.VectorType(ir.DoubleType(), 4)
_I32 = ir.IntType(32)


def _to_vector(builder: ir.IRBuilder, value: Any) -> Any:
    out = ir.Constant(_VEC, ir.Undefined)
    for i in range(4):
        lane = builder.extract_value(value, i)
        out = builder.insert_element(out, lane, ir.Constant(_I32, i))
    return out


def _to_tuple(context: Any, builder: ir.IRBuilder, value: Any) -> Any:
    out = context.get_constant_undef(V4)
    for i in range(4):
        lane = builder.extract_element(value, ir.Constant(_I32, i))
        out = builder.insert_value(out, lane, i)
    return out


def _address(context: Any, builder: ir.IRBuilder, array_type: Any, array: Any, index: Any) -> Any:
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), _VEC.as_pointer())


def _load4(typingctx: Any, array: Any, index: Any) -> Any:
    """``array[index : index + 4]`` (unchecked: the caller keeps it in bounds)."""

    def codegen(context: Any, builder: ir.IRBuilder, sig: Any, args: Any) -> Any:
        address = _address(context, builder, sig.args[0], args[0], args[1])
        return _to_tuple(context, builder, builder.load(address, align=8))

    return V4(array, index), codegen


def _store4(typingctx: Any, array: Any, index: Any, value: Any) -> Any:
    """``array[index : index + 4] = value`` (unchecked)."""

    def codegen(context: Any, builder: ir.IRBuilder, sig: Any, args: Any) -> Any:
        address = _address(context, builder, sig.args[0], args[0], args[1])
        builder.store(_to_vector(builder, args[2]), address, align=8)
        return context.get_dummy_value()

    return types.none(array, index, value), codegen


def _lanewise(operation: str) -> Any:
    def typer(typingctx: Any, a: Any, b: Any) -> Any:
        def codegen(context: Any, builder: ir.IRBuilder, sig: Any, args: Any) -> Any:
            a_vec, b_vec = _to_vector(builder, args[0]), _to_vector(builder, args[1])
            return _to_tuple(context, builder, getattr(builder, operation)(a_vec, b_vec))

        return V4(V4, V4), codegen

    typer.__name__ = f"{operation}4"
    return intrinsic(typer)


add4: Any = _lanewise("fadd")
mul4: Any = _lanewise("fmul")
div4: Any = _lanewise("fdiv")


def _fma4(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
    """``a * b + c`` lane by lane, rounded once."""

    def codegen(context: Any, builder: ir.IRBuilder, sig: Any, args: Any) -> Any:
        signature = ir.FunctionType(_VEC, [_VEC, _VEC, _VEC])
        fma = cgutils.get_or_insert_function(builder.module, signature, "llvm.fma.v4f64")
        vectors = [_to_vector(builder, arg) for arg in args]
        return _to_tuple(context, builder, builder.call(fma, vectors))

    return V4(V4, V4, V4), codegen


def _splat4(typingctx: Any, x: Any) -> Any:
    """``(x, x, x, x)``."""

    def codegen(context: Any, builder: ir.IRBuilder, sig: Any, args: Any) -> Any:
        return context.make_tuple(builder, V4, [args[0]] * 4)

    return V4(types.float64), codegen


# Typed as Any: to the type checker an intrinsic's signature is its typing function's.
load4: Any = intrinsic(_load4)
store4: Any = intrinsic(_store4)
fma4: Any = intrinsic(_fma4)
splat4: Any = intrinsic(_splat4)
