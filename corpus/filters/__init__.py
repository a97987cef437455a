"""Cleaning filters (Falcon/RefinedWeb, Gopher, C4 ...). Importing this package registers them."""
