"""Heltec WiFi LoRa 32 V3: ESP32-S3 + Semtech SX1262, 1.8 V TCXO on DIO3.

LoRa wiring is fixed on the board (Heltec V3 schematic / pin map): NSS 8, SCK 9, MOSI 10,
MISO 11, RESET 12, BUSY 13, DIO1 14. Vext (GPIO 36, active low) switches the 3.3 V rail of the
header, which powers the sensors only while the node is awake. The battery sits on GPIO 1
through a 390 k / 100 k divider enabled by ADC_Ctrl (GPIO 37). Sensor pins below are header
pins free of strapping (0, 3, 45, 46) and USB (19, 20) functions. See firmware/README.md.
"""

HARDWARE = "heltec-v3/sx1262"
RADIO = "sx1262"

LORA = {
    "spi": 1,
    "sck": 9,
    "mosi": 10,
    "miso": 11,
    "nss": 8,
    "reset": 12,
    "busy": 13,
    "dio1": 14,
    "tcxo_mv": 1800,
    "dio2_rf_sw": True,
}

PINS = {
    # bin node
    "i2c_scl": 42,
    "i2c_sda": 41,  # VL53L1X (0x29), LIS3DH (0x18)
    "onewire": 4,  # DS18B20 data, 4.7 k pull-up to 3.3 V
    "us_trig": 5,
    "us_echo": 6,  # JSN-SR04T (echo through a 5 V -> 3.3 V divider)
    "uart_tx": 5,
    "uart_rx": 6,  # A02YYUW instead of the JSN-SR04T (same connector)
    "tilt_switch": 7,
    "battery_adc": 1,
    "battery_divider": 4.9,
    "battery_adc_ctrl": 37,
    "vext": 36,
    # lamp node
    "dim_pwm": 2,  # PWM -> RC filter -> 0-10 V stage
    "relay": 4,
    "presence": 5,  # PIR / radar output
    "meter_cf": 6,  # BL0937 CF
    "supply_sense": 7,  # mains present (optocoupler), 1 = present
}


def radio():
    """The radio HAL (``hal.radio_sx``) over micropython-lib's AsyncSX1262 on this board."""
    from hal.radio_sx import sx1262
    from machine import SPI, Pin  # type: ignore

    c = LORA
    spi = SPI(
        c["spi"], baudrate=2_000_000, sck=Pin(c["sck"]), mosi=Pin(c["mosi"]), miso=Pin(c["miso"])
    )
    return sx1262(
        spi,
        Pin(c["nss"]),
        Pin(c["busy"]),
        Pin(c["dio1"]),
        Pin(c["reset"]),
        dio3_tcxo_millivolts=c["tcxo_mv"],
        dio2_rf_sw=c["dio2_rf_sw"],
    )
