# pdftotext (poppler): the independent reader the PDF receipts are checked with.
need_deb pdftotext poppler-utils
