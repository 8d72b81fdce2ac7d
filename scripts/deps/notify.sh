# aiosmtpd: the real SMTP server (scripts/smtp-sink.py) the mail tests deliver to; openssl makes
# the relay's test certificate for STARTTLS.
need_pip aiosmtpd aiosmtpd
need_deb openssl openssl
