# Early YubiKey: OATH-HOTP with IMF and serial reads, but no UPDATE or swap (< 2.3).
family=yubikey-otp
firmware=2.2.0
serial=2200001
