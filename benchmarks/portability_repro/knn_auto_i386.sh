. "$(dirname "$0")/trees.sh"  # KNeighborsClassifier() (a KD-tree) saved on amd64 fails to load on i386, any format
on amd64 -c "import pickle, joblib, numpy as np; from sklearn.neighbors import KNeighborsClassifier as K; X = np.random.rand(60, 3); m = K().fit(X, X[:, 0] > .5); pickle.dump(m, open('knn.pkl', 'wb')); joblib.dump(m, 'knn.joblib')"
on i386 -c "import joblib; joblib.load('knn.joblib')"; on i386 -c "import pickle; pickle.load(open('knn.pkl', 'rb'))"
