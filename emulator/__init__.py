"""Local Alibaba Cloud emulator: STS and OSS on one port, for the unmodified official SDKs.

from emulator import Emulator, EmulatorConfig
with Emulator(EmulatorConfig(port=0)) as emu:
    ...  # emu.endpoint, emu.clock, emu.sts, emu.public_key_url
"""

from emulator.config import EmulatorConfig, Role
from emulator.server import Emulator

__all__ = ["Emulator", "EmulatorConfig", "Role"]
