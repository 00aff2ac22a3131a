"""What people run: the `citypack` command, provisioning, the network emulator, the simulator, benches."""
