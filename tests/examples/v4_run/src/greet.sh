#!/usr/bin/env bash
echo "${GREETING} from greet.sh" > "$1"
