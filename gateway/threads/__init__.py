"""What outlives a thread's kernel: namespace snapshots (``snapshots``) and the record of its
cells as a Jupyter notebook (``cells``, ``notebook``). Both are files of the thread in the file
store, owned, quota-counted and expiring like the files its code wrote."""
