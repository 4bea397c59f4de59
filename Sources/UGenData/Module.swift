import UGenStore
