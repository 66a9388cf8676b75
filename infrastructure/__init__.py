"""How trialaudit is KEPT: settings, stores, keys and password hashing."""
