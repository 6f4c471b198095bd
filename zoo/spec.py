"""What the zoo offers and which arguments are valid — no torch here, so it imports fast."""

from ..errors import UsageError

# Networks built from a seeded init and calibrated (every variant), and networks exported
# from committed trained weights (only the variants they were trained in).
NETWORKS: tuple[str, ...] = ("mnist", "resnet", "mobilenet", "detector")
TRAINED: tuple[str, ...] = ("shapesdet",)
ALL_NETWORKS: tuple[str, ...] = NETWORKS + TRAINED
VARIANTS: tuple[str, ...] = ("w8a8", "w4a8", "pow2")
TRAINED_VARIANTS: dict[str, tuple[str, ...]] = {"shapesdet": ("w8a8", "pow2")}
FORMS: tuple[str, ...] = ("qcdq", "qonnx")

DEFAULT_HW: dict[str, tuple[int, int]] = {
    "mnist": (28, 28), "resnet": (32, 32), "mobilenet": (64, 64), "detector": (512, 512),
    "shapesdet": (128, 128)}
# Total downsampling of each network, and whether its final map feeds a global average pool
# (whose window must then cover a power-of-two element count, docs/design.md, "Numerics").
STRIDE: dict[str, int] = {"mnist": 4, "resnet": 4, "mobilenet": 16, "detector": 32,
                          "shapesdet": 32}
GLOBAL_POOL: dict[str, bool] = {
    "mnist": False, "resnet": True, "mobilenet": True, "detector": False, "shapesdet": False}
# Packed bits per weight, for size reports: pow2 weights travel in an 8-bit quantizer but
# need only a sign and a 3-bit exponent code.
WEIGHT_STORAGE_BITS: dict[str, int] = {"w8a8": 8, "w4a8": 4, "pow2": 4}


def check_choice(kind: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise UsageError naming the valid choices unless ``value`` is one of them."""
    if value not in choices:
        raise UsageError(f"unknown {kind} '{value}'; choose from: {', '.join(choices)}")


def variants_of(name: str) -> tuple[str, ...]:
    """The variants network ``name`` exists in."""
    check_choice("network", name, ALL_NETWORKS)
    return TRAINED_VARIANTS.get(name, VARIANTS)


def resolve_hw(name: str, input_hw: tuple[int, int] | None) -> tuple[int, int]:
    """The input (height, width) for ``name``: its default, or ``input_hw`` once validated.

    Sides must be multiples of the network's stride; for a network with a global average
    pool the final map (input / stride) must also be a power of two per side.
    """
    check_choice("network", name, ALL_NETWORKS)
    if input_hw is None:
        return DEFAULT_HW[name]
    h, w = (int(v) for v in input_hw)
    s = STRIDE[name]
    ok = h > 0 and w > 0 and h % s == 0 and w % s == 0
    rule = f"positive multiples of {s}"
    if GLOBAL_POOL[name]:
        ok = ok and _is_po2(h // s) and _is_po2(w // s)
        rule = f"{s} times a power of two"
    if not ok:
        raise UsageError(f"input size {h}x{w} does not suit network '{name}': "
                         f"height and width must be {rule}")
    return h, w


def _is_po2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0
