"""What people DO with trialaudit: one eventsourcing Application with commands and queries."""
