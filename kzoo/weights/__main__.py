"""`python -m kzoo.weights list` | `convert SOURCE_KIND MODEL SOURCE_FILE OUT.weights.h5 [--overwrite]`."""

import dataclasses
import os
import sys
import textwrap

import kzoo
from kzoo.utils.cli import ArgumentParser, add_flags, add_verbose_flag, option, run_command
from kzoo.weights.record import save_weights_atomic

KINDS = {"keras-applications": "keras_applications_resnet", "caffe": "caffe_alexnet",
         "torchvision": "torchvision_resnet"}


def check_paths(source, out, overwrite):
    """Refuse a missing source and an output that would replace a file unasked, or the
    source itself (the same file through any link) even with --overwrite."""
    if not os.path.exists(source):
        raise ValueError(f"SOURCE {source!r} does not exist.")
    if not os.path.isfile(source):
        raise ValueError(f"SOURCE {source!r} is not a file.")
    if not out.endswith(".weights.h5"):
        raise ValueError(f"OUT must end in .weights.h5 (Keras' weights format); got {out!r}.")
    if os.path.isdir(out):
        raise ValueError(f"OUT {out!r} is a directory; name the .weights.h5 file to write.")
    if os.path.exists(out):
        if os.path.samefile(source, out):
            raise ValueError(f"OUT {out!r} is the SOURCE file itself; write the conversion to another path.")
        if not overwrite:
            raise ValueError(f"OUT {out!r} already exists; pass --overwrite to replace it, or choose another path.")


def list_table(entries, data_width=44):
    """`list`'s rows: a header, then one row per weights entry; the data column wraps at
    word boundaries onto continuation lines (never cut mid-word)."""
    rows = [("model", "weights", "trained on", "validation error (%)")]
    for model, named in sorted(entries.items()):
        for name, item in sorted(named.items()):
            metrics = ", ".join(f"{k} {v}" for k, v in item["metrics"].items())
            data = textwrap.wrap(item["data"], data_width, break_long_words=False, break_on_hyphens=False) or [""]
            rows.append((model, name, data[0], metrics))
            rows += [("", "", line, "") for line in data[1:]]
    return [f"{m:12s} {n:10s} {d:{data_width}s} {v}".rstrip() for m, n, d, v in rows]


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """`python -m kzoo.weights convert`'s arguments, declared once."""

    kind: str = option(positional=True, choices=tuple(sorted(KINDS)), help="the checkpoint's kind")
    model: str = option(positional=True, help="kzoo model name (resnet50, alexnet, ...)")
    source: str = option(positional=True, help="the checkpoint: .h5 (keras.applications), .caffemodel, .pth")
    out: str = option(positional=True, help="where to write the kzoo weights (.weights.h5)")
    overwrite: bool = option(False, help="replace OUT if it exists (never the source)")


def main(argv=None):
    parser = ArgumentParser(prog="python -m kzoo.weights", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the registered weights")
    convert = commands.add_parser("convert", help="a public checkpoint -> a kzoo .weights.h5 file")
    add_flags(convert, ConvertOptions)
    add_verbose_flag(convert)
    return run_command(parser, _run, argv, errors=(OSError,), tensorflow=lambda args: args.command == "convert")


def _run(args):
    if args.command == "list":
        print("\n".join(list_table(kzoo.weights.manifest())))
        return
    check_paths(args.source, args.out, args.overwrite)
    model = kzoo.weights.convert.CONVERTERS[KINDS[args.kind]](args.source, args.model)
    try:
        save_weights_atomic(model, args.out)
    except OSError as err:
        raise ValueError(f"cannot write OUT {args.out!r}: {err.strerror or err}; check the folder exists and is "
                         f"writable.") from err
    print(f"wrote {args.out} ({model.name}, {model.count_params():,} parameters, input "
          f"{tuple(model.inputs[0].shape[1:])})")


if __name__ == "__main__":
    sys.exit(main())
