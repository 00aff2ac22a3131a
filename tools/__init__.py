"""What people run: the `citypack` command, provisioning, the emulator, the simulator, benches."""
