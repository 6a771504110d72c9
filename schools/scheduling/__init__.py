"""Scheduled changes: record changes validated now and applied later, once, in order.

``validation`` checks a change as the immediate request would; ``services`` creates and
cancels changes; ``wakeups`` sends the messages that wake a worker when changes come
due; ``runner`` claims due changes and applies them through the record services.
"""
