"""What every model shares: the data spec it is built for, normalisation, feature taps."""
