"""Settings: arguments > ``GREENML_*`` environment variables > ``[tool.greenml]`` in
``pyproject.toml`` or a ``greenml.toml`` (current folder) > defaults.

Every value is validated here, before any thread starts; a bad one raises
:class:`~greenml.errors.ConfigError` naming the value, where it came from and what would
be valid.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from greenml.errors import ConfigError

PHASE_NAME = re.compile(r"^[A-Za-z0-9_.\- ]{1,64}$")
PHASE_RULE = "1-64 characters from letters, digits, '_', '-', '.', and space"


Parse = Callable[[str, Any, str], Any]  # (setting, raw value, origin) -> the valid value


def _setting(default: Any, parse: Parse) -> Any:
    """A setting: its default and its parser, declared once on the :class:`Settings` field
    (the field's name is the keyword, ``GREENML_<NAME>`` its variable)."""
    return field(default=default, metadata={"parse": parse})


def _positive(key: str, value: Any, origin: str) -> float:
    return _number(key, value, origin, positive=True, allow_zero=False)


def _non_negative(key: str, value: Any, origin: str) -> float:
    return _number(key, value, origin, positive=True, allow_zero=True)


def _pue(key: str, value: Any, origin: str) -> float:
    x = _number(key, value, origin, positive=True, allow_zero=False)
    if x < 1.0:
        raise ConfigError(
            f"{_source(key, origin)}{value!r} is invalid: PUE is facility energy / IT "
            "energy, so it is >= 1.0 (1.0 when the facility's energy is already metered)"
        )
    return x


def _share(allow_zero: bool) -> Parse:
    def parse(key: str, value: Any, origin: str) -> float:
        x = _number(key, value, origin, positive=True, allow_zero=allow_zero)
        if x > 1:
            raise ConfigError(f"{_source(key, origin)}{value!r} is invalid: a share is <= 1")
        return x

    return parse


def _count(key: str, value: Any, origin: str) -> int:
    x = _number(key, value, origin, positive=True, allow_zero=False)
    if x != int(x):
        raise ConfigError(f"{_source(key, origin)}{value!r} is invalid: give a whole number >= 1")
    return int(x)


def _choice(*valid: str) -> Parse:
    def parse(key: str, value: Any, origin: str) -> str:
        text = value.strip().lower() if isinstance(value, str) else value
        if text not in valid:
            choices = ", ".join(repr(v) for v in valid)
            raise ConfigError(f"{_source(key, origin)}{value!r} is invalid: use one of {choices}")
        return str(text)

    return parse


def _phase(key: str, value: Any, origin: str) -> str:
    try:
        return validate_phase_name(value)
    except ConfigError as e:
        raise ConfigError(f"{_source(key, origin)}: {e}") from None


def _text(key: str, value: Any, origin: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{_source(key, origin)}{value!r} is invalid: give a non-empty string")
    return value.strip()


def _source(key: str, origin: str) -> str:
    if origin == "argument":
        return f"{key}="
    if origin == "env":
        return f"GREENML_{key.upper()}="
    return f"{origin}{_SECTION if origin.endswith('pyproject.toml') else ':'} {key} = "


_SECTION = " [tool.greenml]"


@dataclass(frozen=True)
class Voice:
    """How a message names a setting, in the user's own terms where they are.

    In Python (``flags is None``) a setting is a keyword argument and a value came from
    that argument, a ``GREENML_*`` environment variable or a settings file (``origins``);
    on the command line it is a flag (``flags`` maps a setting to its flag where the two
    differ, e.g. ``instance_type`` -> ``--instance``).
    """

    origins: Mapping[str, str] = field(default_factory=dict)
    flags: Mapping[str, str] | None = None

    @property
    def cli(self) -> bool:
        return self.flags is not None

    def option(self, key: str) -> str:
        """``location=`` in Python, ``--location`` on the command line."""
        if self.flags is not None:
            return self.flags.get(key, "--" + key.replace("_", "-"))
        return f"{key}="

    def set(self, key: str, example: str = "...") -> str:
        """How to give ``key``: ``location='FR'`` or ``--location FR``."""
        if self.flags is not None:
            return f"{self.option(key)} {example}"
        return f"{key}={example}"

    def switch(self, key: str) -> str:
        """How to turn a yes/no setting on: ``name=True`` or ``--name``."""
        return self.option(key) if self.flags is not None else f"{key}=True"

    def given(self, key: str, value: Any) -> str:
        """The value as the user gave it, and where: ``location='Narnia'``,
        ``GREENML_LOCATION='Narnia' (environment variable)``, ``location = 'Narnia' in
        /job/greenml.toml`` or ``--location 'Narnia'``."""
        origin = self.origins.get(key, "argument")
        if origin == "argument":
            if self.flags is not None:
                return f"{self.option(key)} {value!r}"
            return f"{key}={value!r}"
        if origin == "env":
            return f"GREENML_{key.upper()}={value!r} (environment variable)"
        section = _SECTION if origin.endswith("pyproject.toml") else ""
        return f"{key} = {value!r} in {origin}{section}"


PYTHON = Voice()


def _number(key: str, value: Any, origin: str, *, positive: bool, allow_zero: bool) -> float:
    where = _source(key, origin)
    if isinstance(value, bool):
        raise ConfigError(f"{where}{value!r} is not a number")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}{value!r} is not a number") from None
    if not math.isfinite(x):
        raise ConfigError(f"{where}{value!r} is not a finite number")
    if positive and (x < 0 or (x == 0 and not allow_zero)):
        rule = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{where}{value!r} is invalid: it must be a number {rule}")
    return x


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _boolean(key: str, value: Any, origin: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(
        f"{_source(key, origin)}{value!r} is invalid: give true or false (or 1/0, yes/no)"
    )


def _gpu_ids(value: Any, origin: str) -> tuple[int | str, ...] | None:
    where = _source("gpu_ids", origin)
    if value is None:
        return None
    if isinstance(value, str):
        items: Sequence[Any] = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    elif isinstance(value, Sequence):
        items = value
    else:
        raise ConfigError(
            f"{where}{value!r} is invalid: give a list of GPU positions (0, 1, ...) or UUIDs"
        )
    out: list[int | str] = []
    for item in items:
        if isinstance(item, bool):
            raise ConfigError(f"{where}{value!r}: {item!r} is not a GPU position or UUID")
        if isinstance(item, int):
            gid: int | str = item
        elif isinstance(item, str) and item.strip().isdigit():
            gid = int(item.strip())
        elif isinstance(item, str) and item.startswith(("GPU-", "MIG-")):
            gid = item
        else:
            raise ConfigError(
                f"{where}{value!r}: {item!r} is not a GPU position (an integer >= 0) or a "
                "UUID ('GPU-...' or 'MIG-...')"
            )
        if isinstance(gid, int) and gid < 0:
            raise ConfigError(f"{where}{value!r}: {gid} is negative; positions start at 0")
        out.append(gid)
    if not out:
        raise ConfigError(f"{where}{value!r} names no GPU; leave it unset to use all visible")
    return tuple(out)


def validate_phase_name(name: Any) -> str:
    if not isinstance(name, str):
        raise ConfigError(f"phase name {name!r} is a {type(name).__name__}, not a string")
    if not PHASE_NAME.match(name):
        raise ConfigError(f"phase name {name!r} is invalid: use {PHASE_RULE}")
    return name


@dataclass(frozen=True)
class Settings:
    """The resolved settings of one tracked run: each declared once, here, with its
    default and parser. The field name is the ``track()`` keyword, ``GREENML_<NAME>`` the
    environment variable and the key in ``[tool.greenml]``; docs/configuration.md lists
    them all (a test checks)."""

    gpu_ids: tuple[int | str, ...] | None = _setting(None, lambda _key, v, o: _gpu_ids(v, o))
    interval_s: float = _setting(0.1, _positive)
    pue: float | None = _setting(None, _pue)
    grid_intensity_g_per_kwh: float | None = _setting(None, _non_negative)
    price_usd_per_hour: float | None = _setting(None, _non_negative)
    pricing: str = _setting("on-demand", _choice("on-demand", "spot"))  # the table's price
    usd_per_kwh: float | None = _setting(None, _non_negative)
    location: str | None = _setting(None, _text)
    allow_assumed_location: bool = _setting(False, _boolean)
    instance_type: str | None = _setting(None, _text)
    instance_share: float | None = _setting(None, _share(allow_zero=False))
    hourly_intensity_csv: str | None = _setting(None, _text)
    supplier_g_per_kwh: float | None = _setting(None, _non_negative)
    renewable_share: float | None = _setting(None, _share(allow_zero=True))
    residual_mix_g_per_kwh: float | None = _setting(None, _non_negative)
    scope: str | None = _setting(None, _text)
    tables_dir: str | None = _setting(None, _text)
    location_from_metadata: bool = _setting(False, _boolean)
    metadata_endpoint: str | None = _setting(None, _text)
    default_phase: str = _setting("train", _phase)
    powercap_root: str = _setting("/sys/class/powercap", _text)
    cpu_tdp_w: float | None = _setting(None, _positive)  # one CPU package, without RAPL
    # where the run is recorded (MLflow and the local journal)
    experiment: str | None = _setting(None, _text)
    run_name: str | None = _setting(None, _text)
    run_id: str | None = _setting(None, _text)
    tracking_uri: str | None = _setting(None, _text)
    log_to_mlflow: bool = _setting(True, _boolean)
    journal: bool = _setting(True, _boolean)
    journal_dir: str = _setting(".greenml/journal", _text)
    sink_dir: str | None = _setting(None, _text)  # the directory sink's folder (off: None)
    log_interval_s: float = _setting(30.0, _positive)
    node: str | None = _setting(None, _text)  # this host's name in a job (default: hostname)
    # budgets (greenml.progress): a warning when crossed; stop_on_budget stops training
    max_energy_kwh: float | None = _setting(None, _positive)
    max_co2e_kg: float | None = _setting(None, _positive)
    max_cost_usd: float | None = _setting(None, _positive)
    stop_on_budget: bool = _setting(False, _boolean)
    budget_on: str = _setting("actual", _choice("actual", "forecast"))
    forecast_after_steps: int = _setting(20, _count)  # the first forecast, then each point
    mfu_precision: str = _setting("bf16", _choice("bf16", "fp16", "fp8"))  # peak for MFU
    # where each value set came from: "argument", "env" or a settings file's path
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def voice(self, flags: Mapping[str, str] | None = None) -> Voice:
        """How to name these settings to the user in a message (``flags``: the command
        line's, when the arguments came from CLI flags)."""
        return Voice(origins=self.origins, flags=flags)


_PARSERS: dict[str, Parse] = {f.name: f.metadata["parse"] for f in fields(Settings) if f.metadata}
_FIELDS = set(_PARSERS)
#: Every setting's name, in declaration order (the ``track()`` keywords).
NAMES: tuple[str, ...] = tuple(_PARSERS)


def _convert(key: str, value: Any, origin: str) -> Any:
    return None if value is None else _PARSERS[key](key, value, origin)


def _toml_settings(folder: Path) -> tuple[dict[str, Any], str]:
    for name, path in (("greenml.toml", ()), ("pyproject.toml", ("tool", "greenml"))):
        f = folder / name
        if not f.is_file():
            continue
        if sys.version_info >= (3, 11):  # imported only when there is a file to read
            import tomllib
        else:  # pragma: no cover - exercised on 3.10 only
            import tomli as tomllib
        try:
            data: Any = tomllib.loads(f.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise ConfigError(f"{f}: cannot read it: not UTF-8 text ({e})") from None
        except (tomllib.TOMLDecodeError, OSError) as e:
            raise ConfigError(f"{f}: cannot read it as TOML: {e}") from None
        where = "[tool.greenml]"
        for part in path:
            data = data.get(part, {}) if isinstance(data, dict) else data
            if not isinstance(data, dict):
                raise ConfigError(
                    f"{f}: {'.'.join(path[: path.index(part) + 1])} = {data!r} is not a "
                    f"table; greenml's settings go in a {where} table (e.g. pue = 1.2)"
                )
        if data:
            if name == "greenml.toml" and "tool" in data:
                tool = data.get("tool")
                inner = tool.get("greenml", data) if isinstance(tool, dict) else tool
                if not isinstance(inner, dict):
                    raise ConfigError(
                        f"{f}: tool = {tool!r} is not a table; greenml.toml holds the settings "
                        f"themselves (pue = 1.2), or a {where} table"
                    )
                data = inner
            return dict(data), str(f)
    return {}, ""


def resolve(
    arguments: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    config_dir: str | os.PathLike[str] | None = None,
    voice: Voice | None = None,
) -> Settings:
    """Merge and validate the settings of a run (see the module docstring for order).

    ``voice``: a command line's voice, when the arguments came from its flags, so that a
    bad argument is named by its flag."""
    unknown = sorted(set(arguments) - _FIELDS)
    if unknown:
        import difflib

        named = []
        for name in unknown:
            close = difflib.get_close_matches(name, NAMES, n=1, cutoff=0.6)
            named.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
        raise ConfigError(
            f"unknown setting {', '.join(named)}; valid settings are {', '.join(NAMES)}"
        )
    env = os.environ if environ is None else environ
    toml, toml_file = _toml_settings(Path(config_dir) if config_dir else Path.cwd())
    bad = set(toml) - _FIELDS
    if bad:
        import difflib

        named = []
        for name in sorted(bad):
            close = difflib.get_close_matches(name, NAMES, n=1, cutoff=0.6)
            named.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
        where = " under [tool.greenml]" if toml_file.endswith("pyproject.toml") else ""
        raise ConfigError(
            f"{toml_file}: unknown setting {', '.join(named)}{where}; valid settings are "
            f"{', '.join(NAMES)}"
        )
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for key in _FIELDS:
        env_key = f"GREENML_{key.upper()}"
        if arguments.get(key) is not None:
            origins[key] = "argument"
            try:
                values[key] = _convert(key, arguments[key], "argument")
            except ConfigError as e:
                prefix = _source(key, "argument")
                if voice is None or not voice.cli or not str(e).startswith(prefix):
                    raise
                raise ConfigError(f"{voice.option(key)} {str(e)[len(prefix) :]}") from None
        elif env.get(env_key, "").strip():
            origins[key] = "env"
            values[key] = _convert(key, env[env_key], "env")
        elif toml.get(key) is not None:
            origins[key] = toml_file
            values[key] = _convert(key, toml[key], toml_file)
    said = voice or Voice(origins=origins)
    said = Voice(origins=origins, flags=said.flags)
    for a, b, advice in (
        (
            "price_usd_per_hour",
            "usd_per_kwh",
            "give the instance's hourly price (cloud) or the electricity price (own "
            "hardware), not both",
        ),
        (
            "supplier_g_per_kwh",
            "renewable_share",
            "give the supplier's emission rate, or the share covered by renewable "
            "certificates (with residual_mix_g_per_kwh), not both",
        ),
    ):
        if values.get(a) is not None and values.get(b) is not None:
            raise ConfigError(
                f"{said.given(a, values[a])} and {said.given(b, values[b])} are both set: {advice}"
            )
    return Settings(**values, origins=origins)
