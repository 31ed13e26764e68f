"""Receptive fields of named taps, derived from the traced computation rather than a hand table.

The forward pass up to a tap is traced to a jaxpr (abstractly: no weights and no FLOPs are needed) and
every operation between the input image and the tap is walked in order. For each intermediate array we
track, per spatial axis of the *input*, which array axis carries it and an affine map

    unit i along that axis  ->  input pixels [offset + i * jump, offset + i * jump + size)

Convolutions, pooling windows (`reduce_window_*`), explicit pads and strided slices compose this map with
the standard receptive-field arithmetic; elementwise ops keep it; a residual `add` of two branches takes
the union of their boxes (a 3×3 path and its 1×1 stride-2 shortcut see different pixels). Reductions
over a spatial axis (global pooling) make the dependence global along that axis. Any primitive the walker
does not understand raises instead of guessing, so a new layer type cannot silently give a wrong answer.

Because the map comes from the real ops, it includes asymmetric TF-style "SAME" padding (whose offset
depends on the input size, hence the `input_hw` argument) and the exact padding of torch-style layers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.extend import core as jex_core

__all__ = [
    "AxisMap",
    "ReceptiveField",
    "receptive_field",
    "receptive_fields",
    "trace_receptive_fields",
]


@dataclasses.dataclass(frozen=True)
class AxisMap:
    """Unit `i` along one axis sees input pixels `[offset + i * jump, offset + i * jump + size)`."""

    size: int
    jump: int
    offset: int

    def window(self, kernel: int, stride: int, pad_low: int, dilation: int = 1) -> AxisMap:
        """The map after a sliding window (conv or pool) with the given geometry on this axis.

        Output unit o reads layer-input units `o*stride - pad_low + t*dilation`, t in [0, kernel); each of
        those sees `size` pixels starting at `offset + unit*jump`, so the union spans
        `(kernel-1)*dilation*jump + size` pixels.
        """
        return AxisMap(
            size=self.size + (kernel - 1) * dilation * self.jump,
            jump=self.jump * stride,
            offset=self.offset - pad_low * self.jump,
        )

    def union(self, other: AxisMap) -> AxisMap:
        """Pixels seen by unit i through either of two branches with the same stride (residual adds)."""
        if self.jump != other.jump:
            raise NotImplementedError(
                f"cannot merge branches with different strides ({self.jump} vs {other.jump})"
            )
        low = min(self.offset, other.offset)
        high = max(self.offset + self.size, other.offset + other.size)
        return AxisMap(size=high - low, jump=self.jump, offset=low)


_IDENTITY = AxisMap(size=1, jump=1, offset=0)


@dataclasses.dataclass(frozen=True)
class _Dep:
    """How an intermediate array depends on the input image.

    `axes[array_axis] = (input_axis, AxisMap)`: which input spatial axis (0 = H, 1 = W) this array axis
    indexes and the map to pixels. `global_axes`: input axes every element depends on in full (after a
    global pooling, or a broadcast of a pooled value back over space).
    """

    axes: Mapping[int, tuple[int, AxisMap]]
    global_axes: frozenset[int] = frozenset()

    def globalise(self, *array_axes: int) -> _Dep:
        """Drops the listed array axes, recording their input axes as globally mixed."""
        dropped = {self.axes[a][0] for a in array_axes if a in self.axes}
        axes = {a: m for a, m in self.axes.items() if a not in array_axes}
        return _Dep(axes, self.global_axes | dropped)


def _union_deps(deps: Sequence[_Dep], out_shape: Sequence[int], in_shapes: Sequence[Sequence[int]]):
    """Elementwise combination: each output element depends on the union of its operands' pixels.

    Operands have the output's rank; a spatial axis of size 1 broadcast against a larger one means every
    output position reuses one value, i.e. that value's pixels, for all positions: treated as global.
    """
    global_axes: set[int] = set()
    by_input_axis: dict[int, tuple[int, AxisMap]] = {}
    for dep, shape in zip(deps, in_shapes, strict=True):
        global_axes |= dep.global_axes
        for array_axis, (input_axis, amap) in dep.axes.items():
            if shape[array_axis] != out_shape[array_axis]:
                global_axes.add(input_axis)
                continue
            if input_axis in by_input_axis:
                prev_axis, prev_map = by_input_axis[input_axis]
                if prev_axis != array_axis:
                    raise NotImplementedError(
                        "operands index the same input axis on different array axes"
                    )
                by_input_axis[input_axis] = (array_axis, prev_map.union(amap))
            else:
                by_input_axis[input_axis] = (array_axis, amap)
    axes = {a: (k, m) for k, (a, m) in by_input_axis.items() if k not in global_axes}
    return _Dep(axes, frozenset(global_axes))


# Primitives that act elementwise (with size-1 broadcasting): the receptive field is the operands' union.
_ELEMENTWISE = frozenset(
    """abs acos acosh add and asin asinh atan atan2 atanh cbrt ceil clamp convert_element_type copy copy_p
    cos cosh device_put div eq erf erf_inv erfc exp exp2 expm1 floor ge gt imag integer_pow is_finite le
    lgamma digamma log log1p logistic lt max min mul ne neg nextafter not or pow real reduce_precision rem
    round rsqrt select_n sign sin sinh sqrt square stop_gradient sub tan tanh xor sharding_constraint
    mesh_cast optimization_barrier""".split()
)
_REDUCTIONS = frozenset(
    "reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or argmax argmin".split()
)
_WINDOWS = frozenset(
    "reduce_window_sum reduce_window_max reduce_window_min reduce_window cumsum_window".split()
)
_NESTED_JAXPR_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


def _nested_jaxpr(eqn) -> tuple[Any, int] | None:
    """The body of a call-like primitive (jit, custom_jvp/vjp, remat) and its number of consts."""
    for key in _NESTED_JAXPR_PARAMS:
        inner = eqn.params.get(key)
        if inner is None:
            continue
        if isinstance(inner, jex_core.ClosedJaxpr):
            return inner.jaxpr, 0
        if isinstance(inner, jex_core.Jaxpr):
            return inner, 0
    return None


def _walk(jaxpr, in_deps: Sequence[_Dep | None]) -> list[_Dep | None]:
    """Propagates input dependence through every equation of `jaxpr`."""
    env: dict[Any, _Dep | None] = {}
    for var, dep in zip(jaxpr.invars, in_deps, strict=True):
        env[var] = dep

    def read(atom) -> _Dep | None:
        if isinstance(atom, jex_core.Literal):
            return None
        return env.get(atom)

    for eqn in jaxpr.eqns:
        deps = [read(v) for v in eqn.invars]
        if all(d is None for d in deps):
            for out in eqn.outvars:
                env[out] = None
            continue
        outs = _apply_eqn(eqn, deps)
        for out, dep in zip(eqn.outvars, outs, strict=True):
            env[out] = dep
    return [read(v) for v in jaxpr.outvars]


def _first(deps: Sequence[_Dep | None], name: str) -> _Dep:
    """The dependence of operand 0, for rules whose other operands must not depend on the image."""
    dep = deps[0]
    if dep is None:
        raise NotImplementedError(f"{name}: only its first operand may depend on the input image")
    return dep


def _apply_eqn(eqn, deps: list[_Dep | None]) -> list[_Dep | None]:
    """Receptive-field transfer rule of one equation whose inputs depend on the image."""
    name = eqn.primitive.name
    params = eqn.params
    in_shapes = [getattr(v.aval, "shape", ()) for v in eqn.invars]
    out_shape = eqn.outvars[0].aval.shape
    live = [(d, s) for d, s in zip(deps, in_shapes, strict=True) if d is not None]

    nested = _nested_jaxpr(eqn)
    if nested is not None:
        inner, _ = nested
        if len(inner.invars) != len(deps):
            raise NotImplementedError(f"cannot map operands into the body of {name!r}")
        return _walk(inner, deps)

    if name in _ELEMENTWISE:
        if name == "optimization_barrier":
            return list(deps)
        return [_union_deps([d for d, _ in live], out_shape, [s for _, s in live])]

    if name == "conv_general_dilated":
        if deps[1] is not None:
            raise NotImplementedError("convolution whose kernel depends on the input image")
        lhs = _first(deps, name)
        dn = params["dimension_numbers"]
        lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
        if any(d != 1 for d in params["lhs_dilation"]) or params.get("batch_group_count", 1) != 1:
            raise NotImplementedError("transposed / batch-grouped convolutions are not supported")
        kernel_shape = in_shapes[1]
        axes: dict[int, tuple[int, AxisMap]] = {}
        global_axes = set(lhs.global_axes)
        for array_axis, (input_axis, amap) in lhs.axes.items():
            if array_axis == lhs_spec[0]:
                raise NotImplementedError("batch axis indexes a spatial input axis")
            if array_axis == lhs_spec[1]:  # mixed across features: every output sees all of it
                global_axes.add(input_axis)
                continue
            i = list(lhs_spec[2:]).index(array_axis)
            amap = amap.window(
                kernel=kernel_shape[rhs_spec[2 + i]],
                stride=params["window_strides"][i],
                pad_low=params["padding"][i][0],
                dilation=params["rhs_dilation"][i],
            )
            axes[out_spec[2 + i]] = (input_axis, amap)
        return [_Dep(axes, frozenset(global_axes))]

    if name in _WINDOWS:
        n_operands = len(eqn.outvars)
        outs: list[_Dep | None] = []
        for dep in deps[:n_operands]:
            if dep is None:
                outs.append(None)
                continue
            if any(d != 1 for d in params.get("base_dilation", ())):
                raise NotImplementedError("reduce_window with base dilation is not supported")
            dilations = params.get("window_dilation") or (1,) * len(out_shape)
            axes = {
                a: (
                    k,
                    m.window(
                        params["window_dimensions"][a],
                        params["window_strides"][a],
                        params["padding"][a][0],
                        dilations[a],
                    ),
                )
                for a, (k, m) in dep.axes.items()
            }
            outs.append(_Dep(axes, dep.global_axes))
        return outs

    if name == "pad":
        dep = _first(deps, name)
        if deps[1] is not None:
            raise NotImplementedError("pad value depends on the input image")
        axes = {}
        for a, (k, m) in dep.axes.items():
            low, _high, interior = params["padding_config"][a]
            if interior:
                raise NotImplementedError("interior (dilating) padding of a spatial axis")
            axes[a] = (k, m.window(kernel=1, stride=1, pad_low=int(low)))
        return [_Dep(axes, dep.global_axes)]

    if name == "slice":
        dep = _first(deps, name)
        strides = params["strides"] or (1,) * len(out_shape)
        axes = {
            a: (
                k,
                AxisMap(
                    m.size, m.jump * strides[a], m.offset + params["start_indices"][a] * m.jump
                ),
            )
            for a, (k, m) in dep.axes.items()
        }
        return [_Dep(axes, dep.global_axes)]

    if name == "split":
        dep = _first(deps, name)
        axis = params["axis"]
        outs = []
        start = 0
        for size in params["sizes"]:
            axes = {
                a: (k, AxisMap(m.size, m.jump, m.offset + (start * m.jump if a == axis else 0)))
                for a, (k, m) in dep.axes.items()
            }
            outs.append(_Dep(axes, dep.global_axes))
            start += size
        return outs

    if name == "transpose":
        dep = _first(deps, name)
        perm = list(params["permutation"])
        axes = {perm.index(a): km for a, km in dep.axes.items()}
        return [_Dep(axes, dep.global_axes)]

    if name == "broadcast_in_dim":
        dep = _first(deps, name)
        dims = params["broadcast_dimensions"]
        axes, global_axes = {}, set(dep.global_axes)
        for a, (k, m) in dep.axes.items():
            if in_shapes[0][a] != out_shape[dims[a]]:
                global_axes.add(k)
            else:
                axes[dims[a]] = (k, m)
        return [_Dep(axes, frozenset(global_axes))]

    if name in ("reshape", "squeeze", "expand_dims"):
        return [_reshape(_first(deps, name), in_shapes[0], out_shape)]

    if name in _REDUCTIONS:
        return [_reduce(_first(deps, name), params["axes"], len(in_shapes[0]))]

    if name == "concatenate":
        dim = params["dimension"]
        if any(dim in d.axes for d, _ in live):
            raise NotImplementedError("concatenation along a spatial axis")
        return [_union_deps([d for d, _ in live], out_shape, [s for _, s in live])]

    if name == "dot_general":
        return [_dot_general(eqn, deps, in_shapes)]

    if name == "cond":
        return _cond(eqn, deps)

    raise NotImplementedError(
        f"receptive field: no rule for primitive {name!r} on the path from the input to the tap"
    )


def _cond(eqn, deps: list[_Dep | None]) -> list[_Dep | None]:
    """A branch picked at run time (`lax.cond`/`switch`, and `lax.platform_dependent`, which is how
    `tljax.models.conv` picks its CPU kernels): each output sees the union of what any branch reads."""
    if deps[0] is not None:
        raise NotImplementedError("cond whose branch index depends on the input image")
    per_branch = [_walk(branch.jaxpr, deps[1:]) for branch in eqn.params["branches"]]
    outs: list[_Dep | None] = []
    for var, branch_deps in zip(eqn.outvars, zip(*per_branch, strict=True), strict=True):
        live = [d for d in branch_deps if d is not None]
        shape = var.aval.shape
        outs.append(_union_deps(live, shape, [shape] * len(live)) if live else None)
    return outs


def _reduce(dep: _Dep, reduced: Sequence[int], rank: int) -> _Dep:
    """Reducing over a spatial axis mixes all of it; the remaining axes are renumbered."""
    dep = dep.globalise(*reduced)
    kept = [a for a in range(rank) if a not in reduced]
    return _Dep({kept.index(a): km for a, km in dep.axes.items()}, dep.global_axes)


def _reshape(dep: _Dep, in_shape: Sequence[int], out_shape: Sequence[int]) -> _Dep:
    """Reshapes that only add or remove size-1 axes keep the spatial axes; anything else is refused."""
    in_big = [a for a, n in enumerate(in_shape) if n != 1]
    out_big = [a for a, n in enumerate(out_shape) if n != 1]
    if [in_shape[a] for a in in_big] != [out_shape[a] for a in out_big]:
        if dep.axes:
            raise NotImplementedError(
                f"reshape {tuple(in_shape)} -> {tuple(out_shape)} of a spatial map"
            )
        return dep
    axes, global_axes = {}, set(dep.global_axes)
    for a, (k, m) in dep.axes.items():
        if a in in_big:
            axes[out_big[in_big.index(a)]] = (k, m)
        else:  # a spatial axis of size 1 disappears: keep it honest by treating it as fully mixed
            global_axes.add(k)
    return _Dep(axes, frozenset(global_axes))


def _dot_general(eqn, deps, in_shapes) -> _Dep:
    """Dense layers: contracting a spatial axis mixes it; free and batch axes move to their new slots."""
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
    if deps[0] is not None and deps[1] is not None:
        raise NotImplementedError("dot_general of two image-dependent operands")
    lhs_rank, rhs_rank = len(in_shapes[0]), len(in_shapes[1])
    lhs_free = [a for a in range(lhs_rank) if a not in lhs_contract and a not in lhs_batch]
    rhs_free = [a for a in range(rhs_rank) if a not in rhs_contract and a not in rhs_batch]
    if deps[0] is not None:
        dep, contract, batch, free, free_start = (
            deps[0],
            lhs_contract,
            lhs_batch,
            lhs_free,
            len(lhs_batch),
        )
    else:
        dep, contract, batch, free = deps[1], rhs_contract, rhs_batch, rhs_free
        free_start = len(rhs_batch) + len(lhs_free)
    dep = dep.globalise(*contract)
    axes = {}
    for a, km in dep.axes.items():
        if a in batch:
            axes[list(batch).index(a)] = km
        else:
            axes[free_start + free.index(a)] = km
    return _Dep(axes, dep.global_axes)


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of every unit of one tap, for one input size.

    Unit `(y, x)` of the tap sees input rows `[offset[0] + y*jump[0], ... + size[0])` and likewise for
    columns; near the border part of that box is padding, which `box(..., clip=True)` removes.
    """

    tap: str
    size: tuple[int, int]
    jump: tuple[int, int]
    offset: tuple[int, int]
    input_hw: tuple[int, int]
    output_hw: tuple[int, int]

    def box(self, y: int, x: int, *, clip: bool = True) -> tuple[int, int, int, int]:
        """Input-pixel box `(top, left, bottom, right)` (half-open) of unit `(y, x)`, clipped to the image."""
        if not (0 <= y < self.output_hw[0] and 0 <= x < self.output_hw[1]):
            raise ValueError(
                f"unit ({y}, {x}) is outside tap {self.tap!r} of size {self.output_hw}"
            )
        top = self.offset[0] + y * self.jump[0]
        left = self.offset[1] + x * self.jump[1]
        bottom, right = top + self.size[0], left + self.size[1]
        if clip:
            top, left = max(top, 0), max(left, 0)
            bottom, right = min(bottom, self.input_hw[0]), min(right, self.input_hw[1])
        return top, left, bottom, right

    def center(self, y: int, x: int) -> tuple[float, float]:
        """Centre of unit `(y, x)`'s (unclipped) field, in input pixel coordinates."""
        return (
            self.offset[0] + y * self.jump[0] + (self.size[0] - 1) / 2,
            self.offset[1] + x * self.jump[1] + (self.size[1] - 1) / 2,
        )


def trace_receptive_fields(
    fn: Callable[..., Mapping[str, jax.Array]],
    input_shape: Sequence[int],
    *constants: Any,
    dtype=jnp.float32,
) -> dict[str, ReceptiveField]:
    """Receptive fields of every output of `fn(image [B, H, W, C], *constants) -> {name: [B, h, w, c]}`.

    `fn` is traced abstractly with `jax.make_jaxpr`: nothing is computed, and `constants` (e.g. model
    variables) may be `jax.ShapeDtypeStruct` pytrees. Outputs whose spatial extent is pooled away (e.g.
    logits) raise ValueError, since each of their units sees the whole image.
    """
    input_shape = tuple(int(n) for n in input_shape)
    if len(input_shape) != 4:
        raise ValueError(f"input_shape must be [B, H, W, C], got {input_shape}")
    image = jax.ShapeDtypeStruct(input_shape, dtype)
    closed, out_tree = jax.make_jaxpr(fn, return_shape=True)(image, *constants)
    if not isinstance(out_tree, Mapping):
        raise TypeError("fn must return a dict {tap name: array}")
    n_const_leaves = len(jax.tree.leaves(constants))
    input_dep = _Dep({1: (0, _IDENTITY), 2: (1, _IDENTITY)})
    out_deps = _walk(closed.jaxpr, [input_dep] + [None] * n_const_leaves)
    # make_jaxpr flattens the output dict in jax.tree order (sorted keys).
    flat_names = [
        path[0].key for path, _ in jax.tree_util.tree_flatten_with_path(dict(out_tree))[0]
    ]
    result = {}
    for name, dep, var in zip(flat_names, out_deps, closed.jaxpr.outvars, strict=True):
        shape = var.aval.shape
        if dep is None:
            raise ValueError(f"tap {name!r} does not depend on the input image")
        if len(shape) != 4 or dep.global_axes or len(dep.axes) != 2:
            raise ValueError(
                f"tap {name!r} (shape {tuple(shape)}) is not a spatial [B, H, W, C] map with a local "
                "receptive field: each of its units sees the whole image"
            )
        by_input = {k: (a, m) for a, (k, m) in dep.axes.items()}
        (ay, my), (ax, mx) = by_input[0], by_input[1]
        result[name] = ReceptiveField(
            tap=name,
            size=(my.size, mx.size),
            jump=(my.jump, mx.jump),
            offset=(my.offset, mx.offset),
            input_hw=(input_shape[1], input_shape[2]),
            output_hw=(shape[ay], shape[ax]),
        )
    return result


def receptive_fields(
    model: nn.Module,
    taps: Sequence[str],
    input_hw: tuple[int, int] = (224, 224),
    variables: Any = None,
) -> dict[str, ReceptiveField]:
    """Receptive fields of several taps of a tljax model (`model.apply(..., taps=...)`), one trace.

    `variables` may be real arrays or shapes; by default their shapes come from `jax.eval_shape` of
    `model.init`, so no weights are needed. An unknown tap raises the model's ValueError (listing the
    valid names).
    """
    taps = tuple(taps)
    shape = (1, int(input_hw[0]), int(input_hw[1]), 3)
    if variables is None:
        variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(shape, jnp.float32))
    # Weights enter the trace as abstract inputs (not baked-in constants): only their shapes matter.
    abstract = jax.tree.map(
        lambda v: jax.ShapeDtypeStruct(jnp.shape(v), jnp.result_type(v)), variables
    )

    def fn(x, vs):
        return dict(cast(Mapping[str, jax.Array], model.apply(vs, x, train=False, taps=taps)))

    return trace_receptive_fields(fn, shape, abstract)


def receptive_field(
    model: nn.Module, tap: str, input_hw: tuple[int, int] = (224, 224), variables: Any = None
) -> ReceptiveField:
    """Receptive field (size, jump, offset) of one tap at an input of size `input_hw`."""
    return receptive_fields(model, (tap,), input_hw, variables)[tap]
