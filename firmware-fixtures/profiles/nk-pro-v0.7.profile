# Nitrokey Pro, firmware 0.7: AUTHORIZE generation, 3 HOTP slots, 20-byte secrets.
family=nitrokey-pro
firmware=0.7
card_serial=0x00070007
usb_serial=000000070007
