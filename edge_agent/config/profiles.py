"""Instrument profiles: a register map and acquisition settings written once per model.

A device names a profile (``profile: generic-gc``) and may override any of its settings in
the station file. Profiles are found:

* by name among the profiles shipped in ``drivers/`` (``drivers/<family>/profile.yaml``
  and ``drivers/<family>/profiles/*.yaml``, each naming itself with ``profile: <name>``);
* by path, relative to the station file, for a station's own models
  (``profile: ./profiles/my-analyser.yaml``).

A profile is validated with the device that uses it, so a mistake in it is reported with
the profile's own file and line. Its settings are the defaults the station file's device
settings override.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edge_agent_drivers.registry import kind_keys

from edge_agent.config.declare import allowed_keys, layered_keys, setting
from edge_agent.config.errors import ConfigIssue
from edge_agent.config.fields import Checker, Section, suggest
from edge_agent.config.schema import Device
from edge_agent.config.yamlsource import MapNode, ScalarNode, read_yaml_file


@dataclass(frozen=True)
class ProfileInfo:
    """What a profile file says about itself, declared as written there; it names the
    profile and informs the reader, the loader checks nothing else in it."""

    profile: str = setting("text", hint="the profile's name, e.g. generic-gc")
    description: str = setting("text", "", hint="what the profile is for")
    manufacturer: str = setting("text", "", hint="the instrument's manufacturer")
    model: str = setting("text", "", hint="the instrument's model")


#: What a profile may write besides the keys of the driver kinds (registry.kind_keys):
#: its own (ProfileInfo) and the device settings declared ``layered`` on Device.
PROFILE_INFO_KEYS = (*allowed_keys(ProfileInfo), *layered_keys(Device))


def profile_keys() -> tuple[str, ...]:
    """Every key a profile may write: its own and those of every registered kind."""
    return (*PROFILE_INFO_KEYS, *kind_keys())


@dataclass
class Profile:
    """One profile file, read and syntax-checked; its settings are read per device."""

    name: str
    path: Path
    checker: Checker
    root: MapNode | None

    def section(self) -> Section | None:
        """A fresh Section over the profile (unknown keys reported against its file)."""
        if self.root is None:
            return None
        return Section(self.checker, self.root, "", 1, profile_keys())


@dataclass
class ProfileLibrary:
    """The profiles one configuration load may use, each read once."""

    base_dir: Path
    shipped_dirs: tuple[Path, ...] = ()
    _by_path: dict[Path, Profile] = field(default_factory=dict)
    _shipped: dict[str, Path] | None = None

    def find(self, reference: str) -> Profile | str:
        """The profile ``reference`` names, or a message saying why there is none."""
        if "/" in reference or "\\" in reference or reference.endswith((".yaml", ".yml")):
            path = (self.base_dir / reference).resolve()
            if not path.is_file():
                return f"profile file {path} does not exist"
            return self._load(path)
        shipped = self.shipped()
        if reference not in shipped:
            near = suggest(reference, shipped)
            listing = f" (known: {', '.join(sorted(shipped))})" if not near else ""
            return f"unknown profile '{reference}'{near}{listing}"
        return self._load(shipped[reference])

    def shipped(self) -> dict[str, Path]:
        """Profile name -> file, for the profiles in the drivers folders."""
        if self._shipped is None:
            self._shipped = {}
            for folder in self.shipped_dirs:
                for path in sorted(folder.glob("*/profile.yaml")) + \
                        sorted(folder.glob("*/profiles/*.yaml")):
                    name = _declared_name(path)
                    if name:
                        self._shipped.setdefault(name, path)
        return self._shipped

    def _load(self, path: Path) -> Profile:
        if path not in self._by_path:
            document = read_yaml_file(path, str(path))
            name = _name_of(document.root) or path.stem
            self._by_path[path] = Profile(name, path, Checker(str(path), document.issues),
                                          document.root)
        return self._by_path[path]

    def issues(self) -> list[ConfigIssue]:
        """Everything found wrong in the profiles used so far."""
        return [issue for profile in self._by_path.values()
                for issue in profile.checker.issues]


def shipped_profile_dirs() -> tuple[Path, ...]:
    """Where the installed drivers keep their profiles."""
    import edge_agent_drivers

    return tuple(Path(entry) for entry in edge_agent_drivers.__path__)


def _declared_name(path: Path) -> str | None:
    """The ``profile:`` name a file declares (cheap: no validation here)."""
    try:
        document = read_yaml_file(path, str(path))
    except OSError:
        return None
    return _name_of(document.root)


def _name_of(root: MapNode | None) -> str | None:
    entry = root.get("profile") if root is not None else None
    if entry is None or not isinstance(entry.value, ScalarNode):
        return None
    return str(entry.value.value)
