#!/bin/sh
# One connection of the canary's ack line service on TCP port 81 (guest/init runs `nc -ll -p 81 -e` with
# it): every line received is answered with the canary's last ack, read with shell builtins only, so an
# answer costs the guest no fork. A client keeps one connection open and asks as often as it likes.
while read -r _; do
  read -r line </www/index.html || line=
  echo "$line"
done
