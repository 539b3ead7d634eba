"""What a configuration reload (SIGHUP, ``systemctl reload``) changes: a pure diff of the
running ``StationConfig`` and the one just loaded. ``Agent.reload`` applies the plan.

* **Pollers.** One poller owns one link's wire. It restarts (stops, closes its port,
  starts again with the new settings) when the link's settings changed or any device on
  it was added, removed, changed or moved in the polling order. Pollers of other links
  are not touched and poll on without a gap. Sequence numbers live in the outbox, so a
  restarted device continues its numbering; a stateful driver (GC) gets its committed
  state back, as after a restart of the agent.
* **Uplinks** (``StationConfig.every_uplink``: the ``mqtt:`` section's, named
  ``default``, and the ``uplinks:`` section's), each on its own. Changed settings of one
  uplink, or a changed station id for all: that uplink's session ends cleanly (in-flight
  messages get its ``shutdown_grace_s`` to be acknowledged; the rest are released and
  re-sent with the same ids on the new session, never counted as delivered) and it
  reconnects with the new settings. An uplink added starts from the samples still in
  the outbox; one removed stops, and the rows only it was holding leave the outbox
  (store/uplinks.py). A changed ``kind`` is a removal and an addition. A changed
  ``devices`` list only re-routes: no reconnect; rows held only for devices the uplink
  no longer carries leave. The others are not touched.
* **Alarms** (edge_agent/alarms/changes.py): changed, added or removed rules, the
  communication alarm and the outputs apply at once (``AlarmRuntime.reconfigure``);
  an active alarm whose rule is gone is cleared with the reason ``rule removed``, one
  whose limits changed is judged by the new limits on its next sample. The pollers of
  the devices concerned restart around the change; the others poll on.
* **In place.** ``polling`` (retries, backoff), ``store.retention`` and
  ``store.synchronous`` apply from the next poll or transaction; nothing restarts.
* **Refused.** ``store.path`` (the open outbox cannot move, and the samples waiting in it
  would be left behind) and ``health`` (the endpoint's address) need a restart of the
  service. A reload applies the whole file or nothing: when either changed, nothing
  changes and the log says what to do. So what runs is always exactly one version of
  the file, never a mixture.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.alarms.changes import alarm_changes
from edge_agent.config.schema import DEFAULT_UPLINK_NAME, StationConfig, UplinkConfig


@dataclass(frozen=True)
class ReloadPlan:
    """What to do to go from the running configuration to the new one.

    ``pollers_stopped`` and ``pollers_started`` name links; a link in both restarts.
    ``refused`` holds the reasons the whole reload must be refused (then nothing else in
    the plan may be applied).
    """

    pollers_stopped: tuple[str, ...] = ()
    pollers_started: tuple[str, ...] = ()
    devices_added: tuple[str, ...] = ()
    devices_removed: tuple[str, ...] = ()
    devices_changed: tuple[str, ...] = ()
    uplinks_started: tuple[str, ...] = ()
    uplinks_stopped: tuple[str, ...] = ()
    uplinks_reconfigured: tuple[str, ...] = ()
    uplinks_rerouted: tuple[str, ...] = ()  # kept uplinks whose devices: list changed
    routes: bool = False  # which uplinks carry which devices changed (Outbox.set_uplinks)
    polling: bool = False
    retention: bool = False
    synchronous: bool = False
    alarms: tuple[str, ...] = ()  # what changed about alarms, in words (empty: nothing)
    refused: tuple[str, ...] = ()

    @property
    def forwarder(self) -> bool:
        """Some uplink reconnects with new settings."""
        return bool(self.uplinks_reconfigured)

    @property
    def pollers_restarted(self) -> tuple[str, ...]:
        return tuple(name for name in self.pollers_stopped if name in self.pollers_started)

    @property
    def unchanged(self) -> bool:
        """Nothing to apply and nothing refused: an identical configuration."""
        return self == ReloadPlan()

    def summary(self) -> str:
        """One log line saying what changed and what that does."""
        restarted = self.pollers_restarted
        parts = [
            _names("devices changed", self.devices_changed),
            _names("devices added", self.devices_added),
            _names("devices removed", self.devices_removed),
            _names("pollers restarted", restarted),
            _names("pollers started", tuple(n for n in self.pollers_started
                                            if n not in restarted)),
            _names("pollers stopped", tuple(n for n in self.pollers_stopped
                                            if n not in restarted)),
            *(("mqtt" if name == DEFAULT_UPLINK_NAME else f"uplink {name}")
              + ": reconnecting with the new settings" for name in self.uplinks_reconfigured),
            _names("uplinks started", self.uplinks_started),
            _names("uplinks stopped", self.uplinks_stopped),
            _names("uplinks carrying other devices", self.uplinks_rerouted),
            "polling policy updated" if self.polling else "",
            "retention limits updated" if self.retention else "",
            "store.synchronous updated" if self.synchronous else "",
            *self.alarms,
        ]
        return "; ".join(part for part in parts if part) or "nothing changed"


def _names(label: str, names: tuple[str, ...]) -> str:
    return f"{label}: {', '.join(names)}" if names else ""


def plan_reload(old: StationConfig, new: StationConfig) -> ReloadPlan:
    """The plan for replacing ``old`` (running) by ``new`` (just loaded and valid)."""
    refused = _refusals(old, new)
    if refused:
        return ReloadPlan(refused=refused)
    old_links, new_links = old.devices_by_link(), new.devices_by_link()
    alarms = alarm_changes(old, new)

    def changed(name: str) -> bool:
        return old.links[name] != new.links[name] or old_links[name] != new_links[name] \
            or name in alarms.links

    old_devices = {device.id: device for device in old.devices}
    new_devices = {device.id: device for device in new.devices}
    return ReloadPlan(
        pollers_stopped=tuple(sorted(n for n in old_links if n not in new_links or changed(n))),
        pollers_started=tuple(sorted(n for n in new_links if n not in old_links or changed(n))),
        devices_added=tuple(sorted(new_devices.keys() - old_devices.keys())),
        devices_removed=tuple(sorted(old_devices.keys() - new_devices.keys())),
        devices_changed=tuple(sorted(i for i in old_devices.keys() & new_devices.keys()
                                     if old_devices[i] != new_devices[i])),
        **_uplink_changes(old, new),
        polling=old.polling != new.polling,
        retention=old.store.retention != new.store.retention,
        synchronous=old.store.synchronous != new.store.synchronous,
        alarms=alarms.words,
    )


def _uplink_changes(old: StationConfig, new: StationConfig) -> dict[str, object]:
    """Which uplinks start, stop or reconnect, and whether the outbox's routes change."""
    before = {uplink.name: uplink for uplink in old.every_uplink()}
    after = {uplink.name: uplink for uplink in new.every_uplink()}

    def replaced(name: str) -> bool:  # another kind: a new uplink under the same name
        return before[name].kind != after[name].kind

    def reconnects(name: str) -> bool:
        return _settings(before[name]) != _settings(after[name]) \
            or old.station_id != new.station_id

    kept = [name for name in after if name in before and not replaced(name)]
    return {
        "uplinks_started": tuple(n for n in after if n not in before or replaced(n)),
        "uplinks_stopped": tuple(n for n in before if n not in after or replaced(n)),
        "uplinks_reconfigured": tuple(n for n in kept if reconnects(n)),
        "uplinks_rerouted": tuple(n for n in kept if before[n].devices != after[n].devices),
        "routes": [(u.name, u.devices) for u in before.values()]
        != [(u.name, u.devices) for u in after.values()],
    }


def _settings(uplink: UplinkConfig) -> object:
    """What a reconnect applies: everything but the name and the devices carried."""
    return (uplink.kind, uplink.mqtt, uplink.hj212, uplink.sparkplug)


def _refusals(old: StationConfig, new: StationConfig) -> tuple[str, ...]:
    reasons = []
    if old.store.path != new.store.path:
        reasons.append(
            f"store.path changed from {old.store.path} to {new.store.path}: the outbox "
            "cannot move while the agent runs; restart the service to use the new file "
            f"(samples still waiting in {old.store.path} stay there)")
    if old.health != new.health:
        reasons.append(
            f"health changed from {_endpoint(old)} to {_endpoint(new)}: the endpoint "
            "cannot move while the agent runs; restart the service to use it")
    return tuple(reasons)


def _endpoint(config: StationConfig) -> str:
    health = config.health
    return f"{health.host}:{health.port}" if health.enabled else "disabled"
