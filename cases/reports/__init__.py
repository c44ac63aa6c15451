"""Signed PDF reports: render (xhtml2pdf), sign (pyHanko PAdES), verify, store once."""
