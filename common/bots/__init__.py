"""Demo trading bots built on the SDK: `zmx bot market-maker` and `zmx bot taker` (cli.py)."""
