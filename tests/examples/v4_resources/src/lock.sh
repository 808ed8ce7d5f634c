#!/usr/bin/env bash
# counts how many run at once with a folder per running step
mkdir -p ../running
touch "../running/$1"
n=$(ls ../running | wc -l)
sleep 0.2
rm "../running/$1"
if [ "$n" -gt 2 ]; then echo "too many: $n" > "r$1.txt"; else echo "ok" > "r$1.txt"; fi
