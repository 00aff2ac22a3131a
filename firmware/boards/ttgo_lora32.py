"""LilyGO TTGO LoRa32 V2.1 (T3 1.6.1): ESP32 + Semtech SX1276 (HPD13A), 868/915 MHz.

LoRa wiring fixed on the board (LilyGO T3 V1.6.1 pin map): SCK 5, MISO 19, MOSI 27, NSS 18,
RESET 23, DIO0 26, DIO1 33, DIO2 32. OLED on I2C 21/22 (shared with the sensors). The battery
sits on GPIO 35 through a 100 k / 100 k divider. GPIOs 34, 36, 39 are input-only; 2, 12 and 15
are strapping pins and are left free. See firmware/README.md.
"""

HARDWARE = "ttgo-v21/sx1276"
RADIO = "sx1276"

LORA = {"spi": 1, "sck": 5, "mosi": 27, "miso": 19, "nss": 18, "reset": 23, "dio0": 26, "dio1": 33}

PINS = {
    # bin node
    "i2c_scl": 22,
    "i2c_sda": 21,
    "onewire": 13,
    "us_trig": 4,
    "us_echo": 34,
    "uart_tx": 4,
    "uart_rx": 34,
    "tilt_switch": 39,
    "battery_adc": 35,
    "battery_divider": 2.0,
    # lamp node
    "dim_pwm": 25,
    "relay": 14,
    "presence": 36,
    "meter_cf": 39,
    "supply_sense": 34,
}


def radio():
    """The radio HAL (``hal.radio_sx``) over micropython-lib's AsyncSX1276 on this board."""
    from hal.radio_sx import sx1276
    from machine import SPI, Pin  # type: ignore

    c = LORA
    spi = SPI(
        c["spi"], baudrate=2_000_000, sck=Pin(c["sck"]), mosi=Pin(c["mosi"]), miso=Pin(c["miso"])
    )
    return sx1276(spi, Pin(c["nss"]), Pin(c["dio0"]), Pin(c["dio1"]), Pin(c["reset"]))
