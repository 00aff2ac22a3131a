"""Pin maps of the supported boards; ``config.json["board"]`` names the module."""
