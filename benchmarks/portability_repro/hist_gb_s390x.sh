. "$(dirname "$0")/trees.sh"  # HistGradientBoostingClassifier saved on amd64 loads on s390x, then fails at predict
on amd64 -c "import pickle, joblib, numpy as np; from sklearn.ensemble import HistGradientBoostingClassifier as H; X = np.random.rand(200, 3); m = H(max_iter=5).fit(X, X[:, 0] > .5); pickle.dump(m, open('hgb.pkl', 'wb')); joblib.dump(m, 'hgb.joblib')"
on s390x -c "import pickle, joblib, numpy as np; m = joblib.load('hgb.joblib'); print('loaded'); m.predict(np.random.rand(3, 3))"
