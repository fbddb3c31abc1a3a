"""Run directories: what an evolution run records (its config, hall of fame, checkpoint) and how it is read back.

Below both ``evolve``, which writes runs, and ``transfer``, which prunes with their winners, so that neither of
those imports the other.
"""
