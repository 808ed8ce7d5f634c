from path import Path

data = Path("sub/data.csv")
_hidden = 1
