"""SL-CAI: generate -> critique -> revise chains."""
