"""Alarms decided on the station PC (issue 17; docs/alarms.md).

* ``rules``: the typed rules a device carries (``Device.alarms``), read from the station
  file and profiles by edge_agent/config/validate_alarms.py;
* ``events``: the event an alarm produces (raised, escalated, lowered, confirmed,
  cleared) and the sink interface that receives it;
* ``honesty``: why an alarm cannot be confirmed (the reading's quality, the device);
* ``conditions``: one rule's on/off decision with deadband and on-delay, pure;
* ``engine``: every rule of every device, fed each judged sample, restorable from the
  last events of each alarm;
* ``action``: the local output (a coil or register of a beacon or relay module);
* ``runtime``: the sink (one log line per event, the local action) and the restore at
  start from the outbox's ``alarm_state``.

The poller calls the engine once per sample, after the value pipeline has judged it and
before the sample is stored (``decide``: its events are committed with it), then
``emit`` after the commit; only when the station has alarms (no alarms: nothing is
built, nothing is called). Events reach the platform from the outbox, ahead of data
(store/alarmrows.py, docs/alarms.md "How alarms reach the platform").
"""
