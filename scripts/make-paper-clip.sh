#!/usr/bin/env bash
# Makes (once, then caches) a clip with the parameters of the OwnStream paper's Table I: WebM,
# VP8 1920x1080 at 29.97 fps, Vorbis 128 kb/s 44.1 kHz stereo, ~1159 kb/s overall, one keyframe
# per second (keyframe-first clusters). Synthetic content (testsrc2 + a tone), so nothing
# third-party is involved. Prints the clip's path.
#   scripts/make-paper-clip.sh [SECONDS]     (default 20; the clip loops seamlessly with --loop)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
out="target/clips/paper-1080p-${secs}s.webm"
if [ ! -s "$out" ]; then
  mkdir -p target/clips
  ffmpeg -v error -y \
    -f lavfi -i "testsrc2=size=1920x1080:rate=30000/1001:duration=$secs" \
    -f lavfi -i "sine=frequency=440:sample_rate=44100:duration=$secs" -ac 2 \
    -c:v libvpx -b:v 1031k -qmin 4 -qmax 63 -g 30 -keyint_min 30 \
    -deadline good -cpu-used 5 -threads 2 \
    -c:a libvorbis -b:a 128k -ar 44100 \
    -fflags +bitexact -f webm "$out.tmp" >&2
  mv "$out.tmp" "$out"
fi
echo "$out"
