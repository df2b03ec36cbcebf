"""Schedules: workflows started on a cron expression or an interval."""
