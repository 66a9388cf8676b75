"""What the trial IS: aggregates, their events, value objects and pure rules.

This package imports nothing from the other layers of trialaudit and does no I/O.
"""
