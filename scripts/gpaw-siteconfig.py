# GPAW build configuration used by scripts/bootstrap.sh (serial build, Debian libxc/fftw/openblas).
# GPAW 26.x compiles its C sources as C++17, so the compiler must be a C++ one.
# Once a siteconfig is given GPAW no longer adds BLAS by itself: openblas must be named.
mpi = False
compiler = 'g++'
fftw = True
libraries = ['xc', 'fftw3', 'openblas']
