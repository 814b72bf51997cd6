"""Every kzoo command line: its options declared once, the argparse types, one runner.

A command's options are the fields of a dataclass, each declared once with `option`
(default, help, rule, choices): `add_flags` derives the flags and their help from them,
`check_flags` applies the same rules to a value given in Python (with the command line's
words), `flags_from` builds the dataclass from the parsed command line, and
`dataclasses.asdict` is the record a run keeps. `run_command` is every command's `main`:
parse, refuse void flags, quiet TensorFlow, run, and turn a refusal into one line and exit 2.

A bad number is refused while the arguments are parsed, before anything is read
or written, with argparse's own error (exit code 2): "argument --epochs: expected
an integer >= 1, got '0'". Checks that need the model or the data (an input size
below the model's minimum, a feature map beyond a layer's channels) raise
`ValueError` naming the flag, through `flag_error`. The same rules check values given
in Python (`positive_int.check(0, "--epochs")`, for `kzoo.recipes.common.Run`), with the
same words, as a ValueError.
"""

import argparse
import ast
import dataclasses
import difflib
import inspect
import math
import os
import sys

import kzoo
from kzoo import registry
from kzoo.utils import quiet_tensorflow  # noqa: F401  (the commands import it from here)


def _number(kind, accepted, test, name):
    noun = "an integer" if kind is int else "a number"

    def valid(value):
        return (kind is float or not isinstance(value, float)) and math.isfinite(value) and test(value)

    def parse(text):
        try:
            value = kind(text)
        except (TypeError, ValueError):
            value = None
        if value is None or not valid(value):
            raise argparse.ArgumentTypeError(f"expected {noun} {accepted}, got {text!r}")
        return value

    def check(value, flag):
        """The same rule for a value given in Python (kzoo.recipes.common.Run): a ValueError
        worded as the command line's, "argument --epochs: expected an integer >= 1, got 0"."""
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not valid(value):
            raise ValueError(f"argument {flag}: expected {noun} {accepted}, got {value!r}")
        return kind(value)

    parse.__name__ = name  # argparse names the type in some messages
    parse.check = check
    return parse


positive_int = _number(int, ">= 1", lambda v: v >= 1, "positive_int")
non_negative_int = _number(int, ">= 0", lambda v: v >= 0, "non_negative_int")
positive_float = _number(float, "> 0", lambda v: v > 0, "positive_float")
non_negative_float = _number(float, ">= 0", lambda v: v >= 0, "non_negative_float")


def float_between(low, high):
    """A number in [low, high] (e.g. a mean colour channel in [0, 255])."""
    return _number(float, f"in [{low:g}, {high:g}]", lambda v: low <= v <= high, "float_between")


def fraction_below(high):
    """A number in [0, high) (e.g. the share of images held out: all of them leaves no training set)."""
    return _number(float, f"in [0, {high:g})", lambda v: 0 <= v < high, "fraction_below")


def int_between(low, high):
    """An integer in [low, high] (e.g. a JPEG quality in [1, 100])."""
    return _number(int, f"in [{low}, {high}]", lambda v: low <= v <= high, "int_between")


def int_at_least(low):
    """An integer >= `low` (e.g. an image size that leaves a pixel after an 11x11 kernel)."""
    return _number(int, f">= {low}", lambda v: v >= low, f"int_at_least_{low}")


def flag_error(flag, value, accepted):
    """The ValueError for a flag whose value is only checkable after loading a model or data,
    worded as argparse's: "argument --label: 12 is out of range; expected 0..9 (...)"."""
    return ValueError(f"argument {flag}: {value} is out of range; expected {accepted}.")


def check_input_size(size, model_names, flag="--input-size"):
    """Refuse `size` below any of `model_names`' registry minimum (before a run starts)."""
    if size is None:
        return
    entries = [registry.get_entry(name) for name in model_names]
    low = max(entries, key=lambda e: e.min_size)
    if size < low.min_size:
        raise ValueError(f"argument {flag}: {size} is too small for {low.name}; expected an integer >= "
                         f"{low.min_size} (the paper uses {low.default_size}).")


def model_weights(model, weights):
    """--weights for --model: required, so that random weights are never scored by accident;
    "none" asks for them explicitly. Returns what the builders take (None: random)."""
    if weights is None:
        raise ValueError(f"argument --weights: --model {model} needs its trained weights: give --weights "
                         f"PATH (a .weights.h5 file or a weights name), or --weights none for random weights.")
    return None if weights.lower() == "none" else weights


def check_choice(value, choices, flag):
    """`value` among `choices`, worded as argparse's own refusal of a choice."""
    if value not in choices:
        raise ValueError(f"argument {flag}: invalid choice: {value!r} (choose from "
                         f"{', '.join(repr(c) for c in choices)})")
    return value


_WORDS = {"true": True, "false": False, "none": None}


def options_dict(pairs):
    """--option's (key, value) pairs as a dict; a key given twice is refused (only the last
    would count)."""
    keys = [key for key, _ in pairs]
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise ValueError(f"argument --option: {twice[0]} is given {keys.count(twice[0])} times; give each option once.")
    return dict(pairs)


def model_option(text):
    """--option KEY=VALUE -> (key, value): the value as a Python literal (1, (3, 4), False),
    true/false/none in any case, else the text itself (init=caffe)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. towers=1), got {text!r}")
    value = value.strip()
    if value.lower() in _WORDS:
        return key.strip(), _WORDS[value.lower()]
    try:
        return key.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key.strip(), value


def add_option_flag(parser, examples, what="a paper option of the model's builder"):
    """--option KEY=VALUE (repeatable; `options_dict` reads the pairs): `what`, e.g. `examples`."""
    parser.add_argument("--option", type=model_option, action="append", default=[], metavar="KEY=VALUE",
                        help=f"{what} (repeatable), e.g. {examples}")


def paper_options(model_name):
    """The builder's own keyword options of a registered model (name -> default): what
    --option may set; the keras.applications arguments belong to the command."""
    signature = inspect.signature(registry.get_entry(model_name).builder)
    return {p.name: p.default for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY}


def check_model_options(model_name, options, build=False, flag="--option"):
    """Refuse keys that are not `model_name`'s paper options (naming the valid ones) and, with
    `build`, values its builder refuses (built shape-only at the model's smallest input: no
    weight is allocated, so `fc_units=1000000000` is refused, or accepted, at no cost)."""
    valid = paper_options(model_name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        if not valid:
            raise ValueError(f"argument {flag}: {model_name} has no options (got {', '.join(unknown)}); "
                             f"leave out {flag}.")
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        raise ValueError(f"argument {flag}: {model_name} has no option {', '.join(map(repr, unknown))}"
                         + (f" (did you mean {close[0]!r}?)" if close else "")
                         + f"; its options are {', '.join(sorted(valid))}.")
    if build and options:
        entry = registry.get_entry(model_name)
        try:
            kzoo.models.common.shape_only(entry.builder, input_shape=(entry.min_size, entry.min_size, 3), **options)
        except (ValueError, TypeError) as err:
            given = ", ".join(f"{k}={v!r}" for k, v in options.items())
            message = " ".join(str(err).split())  # one line
            if not message.startswith(model_name):
                message = f"{model_name} with {given}: {message}"
            raise ValueError(f"argument {flag}: {message}") from None


class ArgumentParser(argparse.ArgumentParser):
    """Every kzoo command's parser (and its sub-commands'): an empty or blank value is refused
    by name, never taken for "not given" (`--run-dir ''`) or for the current folder (`Path('')`).
    After parsing, `given` holds the dests of the options on the command line, a default's
    own value included (`--regressor-epochs 30` is given); flags are never abbreviated, so
    the command line names each one whole."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.given = set()

    def parse_known_args(self, args=None, namespace=None):
        args = tokens = list(sys.argv[1:] if args is None else args)  # a generator is read once
        namespace, extras = super().parse_known_args(args, namespace)
        options = {option: action.dest for action in self._actions for option in action.option_strings}
        words = tokens[: tokens.index("--")] if "--" in tokens else tokens
        self.given = {options[w.split("=", 1)[0]] for w in words if w.split("=", 1)[0] in options}
        for action in self._actions:
            value = getattr(namespace, action.dest, None)
            values = value if isinstance(value, (list, tuple)) else [value]
            if value is not action.default and any(isinstance(v, str) and not v.strip() for v in values):
                name = "/".join(action.option_strings) or action.metavar or action.dest
                fix = f"leave {name} out for its default" if action.option_strings else f"give {name}"
                self.error(f"argument {name}: expected a value, got an empty one ({value!r}); {fix}.")
        return namespace, extras


def add_verbose_flag(parser):
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own log lines (hidden otherwise, unless TF_CPP_MIN_LOG_LEVEL is set)")


def folder(text):
    """A path option's rule: the command line refuses '' itself (ArgumentParser)."""
    return text


def _check_folder(value, flag):
    """A folder given in Python (a str or a pathlib.Path): '' would be taken for "not given"."""
    value = os.fspath(value)
    if not value.strip():
        raise ValueError(f"argument {flag}: expected a folder, got {value!r}; leave {flag} out for the default.")
    return value


folder.check = _check_folder


@dataclasses.dataclass(frozen=True)
class Flag:
    """How a dataclass field is given on the command line (`option`)."""

    help: str
    rule: object = None  # an argparse type with .check(value, flag) (positive_int, folder, ...)
    choices: tuple = None
    metavar: object = None
    nargs: object = None
    group: str = None  # the argument group it is listed under in --help
    positional: bool = False  # an argument named by its place, not a --flag
    required: bool = False  # the command line must give it
    negatable: bool = False  # a bool with --no-flag too (argparse.BooleanOptionalAction); None: not given


def option(default=None, *, help, rule=None, choices=None, metavar=None, nargs=None, group=None, positional=False,
           required=False, negatable=False):
    """A dataclass field that is a command-line flag `--field-name` (`positional`: an argument
    by its place; `required`: one the command line must give): its default, its help (a format
    string: `add_flags`' context fills it), its rule (the parser's type, and the check of a
    value given in Python) or its choices. A bool field is a switch (store_true), or with
    `negatable` a --flag / --no-flag pair."""
    spec = Flag(help, rule, choices, metavar, nargs, group, positional, required, negatable)
    return dataclasses.field(default=default, metadata={"flag": spec})


def flag_of(field):
    return field.name if field.metadata["flag"].positional else "--" + field.name.replace("_", "-")


def option_fields(config):
    """The fields of dataclass `config` (a class or an instance) that are flags."""
    return [f for f in dataclasses.fields(config) if "flag" in f.metadata]


def add_flags(parser, config, groups=None, context=None, only=None):
    """A flag for each `option` field of dataclass `config` (`only`: of those named), under
    `groups[spec.group]` (an argument group) where given, its help formatted with `context`."""
    for field in option_fields(config):
        if only is not None and field.name not in only:
            continue
        spec = field.metadata["flag"]
        target = (groups or {}).get(spec.group, parser)
        kwargs = {"help": spec.help.format(**(context or {}))} if spec.positional else {
            "dest": field.name, "help": spec.help.format(**(context or {}))}
        if spec.negatable:
            kwargs.update(action=argparse.BooleanOptionalAction, default=field.default)
        elif field.type in (bool, "bool"):
            kwargs["action"] = "store_true"
        else:
            if not spec.positional:
                kwargs["default"] = field.default
            kwargs.update({k: v for k, v in (("type", spec.rule), ("choices", spec.choices),
                                             ("metavar", spec.metavar), ("nargs", spec.nargs)) if v is not None})
            if spec.required:
                kwargs["required"] = True
        target.add_argument(flag_of(field), **kwargs)


def check_flags(config):
    """Apply each `option` field's rule to the value `config` holds, as the command line
    applies it and in its words (a ValueError); for a dataclass built in Python. None is a
    default's "not given" where the field's default is None."""
    for field in option_fields(config):
        spec, value, flag = field.metadata["flag"], getattr(config, field.name), flag_of(field)
        if value is None and field.default is None:
            continue
        if spec.nargs is not None and not spec.negatable:  # several values: a list (or tuple) of them
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
                raise ValueError(f"argument {flag}: expected a list of values, got {value!r}")
            if isinstance(spec.nargs, int) and len(value) != spec.nargs:
                raise ValueError(f"argument {flag}: expected {spec.nargs} values, got {len(value)} ({value!r})")
            if spec.nargs == "+" and not value:
                raise ValueError(f"argument {flag}: expected at least one value, got none")
        if field.type in (bool, "bool"):
            if not isinstance(value, bool):
                raise ValueError(f"argument {flag}: expected True or False, got {value!r}")
        elif spec.rule is not None and hasattr(spec.rule, "check"):
            values = [spec.rule.check(v, flag) for v in value] if spec.nargs else spec.rule.check(value, flag)
            object.__setattr__(config, field.name, values)
        elif spec.choices is not None:
            for one in value if spec.nargs else [value]:
                check_choice(one, spec.choices, flag)


def flags_from(config, args, **values):
    """Dataclass `config` built from the parsed command line `args` (its `option` fields) and `values`."""
    return config(**{f.name: getattr(args, f.name) for f in option_fields(config) if hasattr(args, f.name)}, **values)


def run_command(parser, run, argv=None, *, checks=None, interrupted=None, errors=(), tensorflow=True, parse=None):
    """Every kzoo command's main: parse `argv` with `parser`, refuse the flags that others make
    void (`checks(parser, args)` calls parser.error), load TensorFlow quietly (unless
    --verbose; `tensorflow`: False, or a test of `args`, for commands that need none), then `run(args)`; a ValueError
    or FileNotFoundError it raises (and `errors`) is one line, "error: ...", and exit code 2.
    `interrupted(args)`: what Ctrl-C says (exit 130); `parse(parser, argv)`: a parse of the
    command's own. Returns `run`'s exit code (None: 0)."""
    args = parse(parser, argv) if parse is not None else parser.parse_args(argv)
    if checks is not None:
        checks(parser, args)
    if tensorflow(args) if callable(tensorflow) else tensorflow:
        quiet_tensorflow(getattr(args, "verbose", False))
    try:
        code = run(args)
        return code if isinstance(code, int) else 0  # a run function may return its result
    except (ValueError, FileNotFoundError, *errors) as err:
        parser.exit(2, f"error: {err}\n")
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        parser.exit(130, f"\ninterrupted: {interrupted(args)}\n")

