"""taxifare: NYC taxi-fare prediction on data too big for memory."""

__version__ = "0.1.0"
