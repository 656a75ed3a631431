"""The OSS half of the emulator: signatures, storage, operations, wire formats."""
