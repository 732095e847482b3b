# Sourced by the smoke tests (bash): free_port prints a TCP port on 127.0.0.1 that nothing listens on,
# or fails after 50 tries.
free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}
