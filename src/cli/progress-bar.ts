// A progress bar on stderr for long operations; on a non-terminal it prints a line every 10 %.
export function progressBar(label: string): { update(fraction: number): void; done(): void } {
  const tty = process.stderr.isTTY;
  let lastTenth = -1;
  const started = Date.now();
  return {
    update(fraction) {
      const clamped = Math.max(0, Math.min(1, fraction));
      if (tty) {
        const width = 30;
        const filled = Math.round(clamped * width);
        const elapsed = ((Date.now() - started) / 1000).toFixed(0);
        process.stderr.write(
          `\r${label} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${(clamped * 100).toFixed(0)}% ${elapsed}s`,
        );
      } else if (Math.floor(clamped * 10) > lastTenth) {
        lastTenth = Math.floor(clamped * 10);
        process.stderr.write(`${label}: ${lastTenth * 10}%\n`);
      }
    },
    done() {
      if (tty) process.stderr.write("\n");
    },
  };
}
