#pragma once
// Include MPI through this header, never <mpi.h> directly. Open MPI's mpi.h pulls in its
// deprecated C++ bindings in C++ code, and those need libmpi_cxx, which the build does not
// link (it uses MPI::MPI_C): any executable with such an object fails to link with
// "undefined reference to MPI::Comm::Comm()". dprun uses the C API only.
// (Defining these for the whole target in CMake would make this header unnecessary.)
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>
