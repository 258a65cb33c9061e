#!/usr/bin/env bash
# Makes Fashion-MNIST available offline: Debian's dataset-fashion-mnist package holds the four
# IDX files, which jaxae finds by itself. Without root or apt-get, nothing is installed and
# jaxae downloads the data through TFDS instead (that needs the internet).
set -u
if dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's dataset-fashion-mnist (Fashion-MNIST's IDX files, for offline use)"
  if apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null; then
    exit 0
  fi
  echo "note: apt-get could not install dataset-fashion-mnist; TFDS will download the data"
else
  echo "note: dataset-fashion-mnist is not installed (needs root); TFDS will download the data"
fi
exit 0
