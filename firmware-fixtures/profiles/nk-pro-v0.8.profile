# Nitrokey Pro, firmware 0.8: first inline-password generation, 3 HOTP slots, 40-byte secrets.
family=nitrokey-pro
firmware=0.8
card_serial=0x00080008
usb_serial=000000080008
