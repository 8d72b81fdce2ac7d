# Nitrokey Pro, firmware 0.15: current firmware, HOTP verification slot 0x13 reserved.
family=nitrokey-pro
firmware=0.15
card_serial=0x00C0FFEE
usb_serial=000000C0FFEE
