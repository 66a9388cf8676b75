"""How trialaudit is REACHED: the HTTP API and the command line. The composition root."""
