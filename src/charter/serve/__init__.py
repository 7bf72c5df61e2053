"""`charter serve reward`: the constitutional judge as an HTTP reward server for multi-node RL."""
