#!/usr/bin/env bash
sleep "$2"
echo "$1" > "$1.txt"
