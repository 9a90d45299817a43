"""pi-appliance: DMA-timed tunes on a GPIO piezo buzzer, driven over the LAN like a music player."""

__version__ = "0.1.0"
