"""The precision a model computes in: one Keras dtype policy name, chosen once (a builder's
`dtype=`, `kzoo.load(dtype=)`, the commands' --precision) and honoured by every path.

`kzoo.models.common.dtype_policy(name)` is the scope the builders make their layers in.
Variables stay float32 under both mixed policies; layers compute in float16 or bfloat16.
Only float16 needs loss scaling: bfloat16 keeps float32's exponent range.
"""

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DEFAULT = "float32"


def check_precision(name, what="dtype"):
    """`name` if it is one of PRECISIONS (a Keras DTypePolicy gives its name), else a ValueError."""
    name = getattr(name, "name", name)
    if name not in PRECISIONS:
        raise ValueError(f"{what} must be one of {', '.join(PRECISIONS)} (a Keras dtype policy name: mixed_bfloat16 "
                         f"for AMX CPUs and A100/H100 GPUs, mixed_float16 for older GPUs); got {name!r}.")
    return name


def loss_scaled(name):
    """Whether training in `name` scales the loss (float16's narrow range), else not."""
    return name == "mixed_float16"


def recorded(settings):
    """The precision a run's config.json settings train in (runs before --precision record
    mixed_precision only; runs before that, neither: float32)."""
    name = settings.get("precision")
    if name is not None and getattr(name, "__hash__", None) and name in PRECISIONS:
        return name
    if name is not None:
        raise ValueError(f"the run's config.json is damaged: its precision {name!r} is none of "
                         f"{', '.join(PRECISIONS)}. Restore it from a copy of the run directory.")
    return "mixed_float16" if settings.get("mixed_precision") else DEFAULT


def compute_dtype(name):
    return {"float32": "float32", "mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}[name]


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags (an empty set where /proc/cpuinfo is not there)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def has_amx(flags=None):
    """Whether the CPU has AMX bfloat16 tiles (where mixed_bfloat16 beats float32 on a CPU)."""
    return "amx_bf16" in (cpu_flags() if flags is None else flags)


def cpu_note(name, flags=None):
    """What to tell a user who trains or evaluates in `name` on a CPU (None: nothing): bfloat16
    without AMX tiles runs on slower kernels than float32's (ResNet-50 0.68x inference, 0.75x
    training on AVX-512-BF16 alone; docs/performance.md)."""
    if name != "mixed_bfloat16" or has_amx(flags):
        return None
    return ("this CPU has no AMX bfloat16 tiles (amx_bf16 in /proc/cpuinfo): mixed_bfloat16 runs on slower "
            "kernels than float32 here (~0.7x); --precision float32 is faster on this machine.")
