# YubiKey 5 series, OTP application on the keyboard interface.
family=yubikey-otp
firmware=5.4.3
serial=12345678
