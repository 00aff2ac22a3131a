"""The citypack gateway: ChirpStack MQTT events in, fleet state, rules and tracked commands out."""
