"""Schedules, deadlines and retries: the desk's day.

``cron`` and ``policy`` are pure (slots, deadlines, back-off, the deadline cut) and take the
time as an argument; ``service`` fires slots exactly once across servers and sweeps deadlines
and retries on a clock it is given. Nothing here is imported by ``runs`` but the pure parts.
"""
