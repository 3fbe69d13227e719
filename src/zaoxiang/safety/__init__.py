"""Safety and provenance: prompt filter, NSFW image check, invisible watermark, audit log.

The service talks to :class:`zaoxiang.safety.gate.SafetyGate` only; the modules behind it each do
one job and can be used alone (the ``verify`` command uses :mod:`zaoxiang.safety.watermark`).
Importing this package loads nothing heavy: models and lists load on first use.
"""
